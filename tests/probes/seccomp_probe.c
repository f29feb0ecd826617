/* Asks the kernel for what a container's seccomp filter decides, and prints one line per
 * request: "<request> ok" or "<request> errno N". Built static by the tests (the test image
 * is busybox only) and bind-mounted into containers.
 *
 *   clone HEX       clone(2) with these flags (| SIGCHLD); the child exits at once
 *   clone3 HEX      clone3(2) with these flags, exit signal SIGCHLD
 *   thread          pthread_create + join (glibc tries clone3, then falls back to clone)
 *   getfd           pidfd_getfd(2) of our own stdout through pidfd_open(2) of ourselves
 *   personality HEX personality(2)
 *   socket FAMILY   socket(FAMILY, SOCK_STREAM, 0)
 *   nr N            syscall number N with zero arguments
 */
#define _GNU_SOURCE
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/personality.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#ifndef SYS_clone3
#define SYS_clone3 435
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

struct clone_args_v0 {
    uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls;
};

static void report(const char *what, const char *arg, long ret, int err) {
    if (ret < 0)
        printf("%s%s%s errno %d\n", what, arg ? " " : "", arg ? arg : "", err);
    else
        printf("%s%s%s ok\n", what, arg ? " " : "", arg ? arg : "");
    fflush(stdout);
}

static long reap(long pid) {
    if (pid == 0)
        _exit(0);
    if (pid > 0)
        waitpid((pid_t)pid, NULL, __WALL);
    return pid;
}

static void *idle(void *arg) { return arg; }

int main(int argc, char **argv) {
    for (int i = 1; i < argc; i++) {
        const char *what = argv[i], *arg = i + 1 < argc ? argv[i + 1] : "0";
        long ret;
        errno = 0;
        if (!strcmp(what, "clone")) {
            unsigned long flags = strtoul(arg, NULL, 16) | SIGCHLD;
            ret = reap(syscall(SYS_clone, flags, 0, 0, 0, 0));
            report(what, arg, ret, errno), i++;
        } else if (!strcmp(what, "clone3")) {
            struct clone_args_v0 args = {.flags = strtoull(arg, NULL, 16), .exit_signal = SIGCHLD};
            ret = reap(syscall(SYS_clone3, &args, sizeof args));
            report(what, arg, ret, errno), i++;
        } else if (!strcmp(what, "thread")) {
            pthread_t thread;
            int err = pthread_create(&thread, NULL, idle, NULL);
            if (!err)
                pthread_join(thread, NULL);
            report(what, NULL, err ? -1 : 0, err);
        } else if (!strcmp(what, "getfd")) {
            ret = syscall(SYS_pidfd_open, getpid(), 0);
            if (ret >= 0)
                ret = syscall(SYS_pidfd_getfd, ret, 1, 0);
            report(what, NULL, ret, errno);
        } else if (!strcmp(what, "personality")) {
            ret = personality(strtoul(arg, NULL, 16));
            report(what, arg, ret, errno), i++;
        } else if (!strcmp(what, "socket")) {
            ret = socket(atoi(arg), SOCK_STREAM, 0);
            report(what, arg, ret, errno), i++;
        } else if (!strcmp(what, "nr")) {
            ret = syscall(atol(arg), 0, 0, 0, 0, 0, 0);
            report(what, arg, ret, errno), i++;
        } else {
            fprintf(stderr, "unknown request %s\n", what);
            return 2;
        }
    }
    return 0;
}
