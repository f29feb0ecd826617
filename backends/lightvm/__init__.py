"""The VM backend: libvirt/QEMU machines that run backends.linux_native over SSH."""
