"""Benchmark: hostrt pull vs `skopeo copy`, and hostrt's layer unpack vs `tar -xzf`.

Run by hand (it takes a minute or two and ~2 GB of /tmp):
    .venv/bin/python tests/bench/bench_images.py [--target-mb 200] [--runs 3]

It builds a multi-layer image (~target MB of gzip layers) from directories of this host,
pushes it to a docker-registry started on 127.0.0.1, then times, on a warm page cache:
  pull:   `hostrt pull` (a fresh root each run) vs `skopeo copy docker://… oci:…` (a fresh layout)
  unpack: hostrt's verified, checked unpack of every layer vs `tar -xzf` of the same blobs
and prints the best of N runs and the ratios (hostrt / reference; lower is better).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from hostrt.images import oci  # noqa: E402
from hostrt.images.digest import of_bytes  # noqa: E402
from hostrt.images.layers import LayerDirs  # noqa: E402
from hostrt.images.local import LocalImages  # noqa: E402
from hostrt.images.push import push  # noqa: E402
from hostrt.images.store import ContentStore  # noqa: E402
from hostrt.paths import Paths  # noqa: E402
from tests.images.registry_server import start_registry  # noqa: E402

CANDIDATES = ["/usr/bin", "/usr/libexec", "/usr/lib/python3", "/usr/share/doc", "/usr/lib/x86_64-linux-gnu", "/usr/share"]


def build_image(store: ContentStore, work: Path, target: int) -> str:
    layers, diff_ids, total = [], [], 0
    for src in CANDIDATES:
        if total >= target or not os.path.isdir(src):
            continue
        out = work / f"layer{len(layers)}.tar.gz"
        subprocess.run(["tar", "-C", "/", "--warning=no-file-changed", "-czf", str(out), src.lstrip("/")], check=False)
        raw = subprocess.run(["gzip", "-dc", str(out)], capture_output=True, check=True).stdout
        digest, size = store.put_file(out)
        layers.append(oci.Descriptor(mediaType=oci.OCI_LAYER_GZIP, digest=digest, size=size))
        diff_ids.append(of_bytes(raw))
        total += size
        out.unlink()
        print(f"  layer {src}: {size / 1e6:.0f} MB gzip, {len(raw) / 1e6:.0f} MB tar", flush=True)
    config = oci.dump(oci.ImageConfig(architecture="amd64", os="linux", rootfs=oci.RootFS(diff_ids=diff_ids)))
    manifest = oci.dump(oci.Manifest(
        mediaType=oci.OCI_MANIFEST,
        config=oci.Descriptor(mediaType=oci.OCI_CONFIG, digest=store.put_bytes(config), size=len(config)),
        layers=layers,
    ))
    desc = oci.Descriptor(mediaType=oci.OCI_MANIFEST, digest=store.put_bytes(manifest), size=len(manifest))
    store.set_name("bench:latest", desc)
    return desc.digest


def best(runs: int, fn) -> float:  # noqa: ANN001
    times = []
    for _ in range(runs):
        times.append(fn())
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target-mb", type=int, default=200)
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hostrt-bench-"))
    reg = start_registry(work / "registry")
    try:
        src_root = work / "src"
        local = LocalImages.open(Paths(root=src_root, run=src_root / "run"))
        print("building the image", flush=True)
        build_image(local.store, work, args.target_mb * 1_000_000)
        ref = f"{reg.host}/bench:latest"
        push(local, "bench:latest", ref)
        manifest = oci.parse_manifest(local.store.read(local.store.lookup("bench:latest").digest))
        size = sum(l.size for l in manifest.layers)
        print(f"image: {len(manifest.layers)} layers, {size / 1e6:.0f} MB compressed", flush=True)

        def hostrt_pull() -> float:
            root = work / "pull"
            shutil.rmtree(root, ignore_errors=True)
            env = {**os.environ, "HOSTRT_ROOT": str(root)}
            t = time.perf_counter()
            subprocess.run([sys.executable, "-m", "hostrt", "pull", "-q", ref], env=env, check=True, cwd=REPO, stdout=subprocess.DEVNULL)
            return time.perf_counter() - t

        def skopeo_copy() -> float:
            layout = work / "skopeo"
            shutil.rmtree(layout, ignore_errors=True)
            t = time.perf_counter()
            subprocess.run(["skopeo", "copy", "-q", "--src-tls-verify=false", f"docker://{ref}", f"oci:{layout}:bench"], check=True)
            return time.perf_counter() - t

        hostrt_pull(), skopeo_copy()  # warm up caches
        pull_ours, pull_skopeo = best(args.runs, hostrt_pull), best(args.runs, skopeo_copy)

        def hostrt_unpack() -> float:
            layers_root = work / "layers"
            shutil.rmtree(layers_root, ignore_errors=True)
            dirs = LayerDirs(layers_root)
            cfg = oci.parse_config(local.store.read(manifest.config.digest))
            t = time.perf_counter()
            for layer, diff_id in zip(manifest.layers, cfg.rootfs.diff_ids, strict=True):
                dirs.ensure(local.store, layer.digest, layer.mediaType, diff_id)
            return time.perf_counter() - t

        def tar_unpack() -> float:
            out = work / "tar"
            shutil.rmtree(out, ignore_errors=True)
            t = time.perf_counter()
            for i, layer in enumerate(manifest.layers):
                d = out / str(i)
                d.mkdir(parents=True)
                subprocess.run(["tar", "-C", str(d), "-xzf", str(local.store.blob_path(layer.digest))], check=True)
            return time.perf_counter() - t

        unpack_ours, unpack_tar = best(args.runs, hostrt_unpack), best(args.runs, tar_unpack)
        results = {
            "layers": len(manifest.layers),
            "compressed_mb": round(size / 1e6),
            "pull_hostrt_s": round(pull_ours, 2),
            "pull_skopeo_s": round(pull_skopeo, 2),
            "pull_ratio": round(pull_ours / pull_skopeo, 2),
            "unpack_hostrt_s": round(unpack_ours, 2),
            "unpack_tar_s": round(unpack_tar, 2),
            "unpack_ratio": round(unpack_ours / unpack_tar, 2),
        }
        print(json.dumps(results, indent=2))
    finally:
        reg.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
