"""Writable volumes on the real node, made as kind's local-path-provisioner makes them.

kwok's pvc-provision stage binds every claim to a hostPath PersistentVolume: a folder below VOLUMES_DIR
(control_plane points the stage there). The kubelet would create that folder owned by root with mode 0755, and
a pod that runs as another user (valkey runs as uid 1000) could not write its own volume; fsGroup does not
apply to hostPath. kind's provisioner creates each folder with mode 0777, and so does this, as each PV appears.

    python -m polyp_dev.cluster.volumes --kubeconfig FILE --root DIR
"""

from __future__ import annotations

import argparse
import subprocess
import time
from pathlib import Path

from .processes import binary


def prepare(path: str, root: Path) -> bool:
    """Create the PV's folder, writable by any user, if it lies below root; whether it did."""
    folder = Path(path)
    if root not in folder.parents:
        return False
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o777)  # mkdir's mode is masked by the umask
    return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args()
    while True:
        # The list first, then every change; each line one PV's hostPath (empty for other volume types).
        watch = subprocess.Popen(
            [
                binary("kubectl"),
                f"--kubeconfig={args.kubeconfig}",
                "get",
                "pv",
                "--watch",
                "-o",
                'jsonpath={.spec.hostPath.path}{"\\n"}',
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert watch.stdout is not None
        for line in watch.stdout:
            if line.strip() and prepare(line.strip(), args.root):
                print(f"volume ready: {line.strip()}", flush=True)
        print(f"kubectl watch exited with {watch.wait()}; watching again", flush=True)
        time.sleep(2)


if __name__ == "__main__":
    main()
