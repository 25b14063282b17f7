import os
import shlex
import subprocess
import tarfile

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _dry_run(script, *args, **env):
    result = subprocess.run(
        [os.path.join(ROOT, "launch", script), *args],
        env={**os.environ, "DRY_RUN": "1", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    return result


@pytest.fixture
def config(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("objective: nll\n")
    return str(path)


def _commands(stdout):
    return [
        shlex.split(line[2:])
        for line in stdout.splitlines()
        if line.startswith("+ ")
    ]


def test_tpu_pod_runs_the_same_train_command_on_every_worker(config):
    result = _dry_run(
        "tpu_pod.sh",
        config,
        "objective=p",
        "data.system_prompt=You are terse.",
        TPU_NAME="slice",
        ZONE="us-central2-b",
        CREATE="1",
        ACCELERATOR="v4-32",
    )
    assert result.returncode == 0, result.stderr
    create, scp, ssh = _commands(result.stdout)
    assert create[:5] == ["gcloud", "compute", "tpus", "tpu-vm", "create"]
    assert "--accelerator-type=v4-32" in create
    assert "--worker=all" in scp and "--worker=all" in ssh
    tarball = scp[-2]
    with tarfile.open(tarball) as archive:
        names = archive.getnames()
    assert "./pyproject.toml" in names
    assert not any(name.startswith("./.git/") for name in names)
    remote = next(a for a in ssh if a.startswith("--command="))
    train = shlex.split(remote.split("&& bnll train", 1)[1])
    assert train == [
        config,
        "objective=p",
        "data.system_prompt=You are terse.",
    ]
    assert "jax[tpu]==0.10.2" in remote


def test_gpu_hosts_give_each_host_its_process_id(config):
    result = _dry_run(
        "gpu_hosts.sh",
        config,
        "objective=nll",
        HOSTS="gpu-a gpu-b gpu-c",
        PORT="9999",
    )
    assert result.returncode == 0, result.stderr
    ssh = [c for c in _commands(result.stdout) if c[0] == "ssh"]
    assert sorted(c[1] for c in ssh) == ["gpu-a", "gpu-b", "gpu-c"]
    for command in ssh:
        process = ["gpu-a", "gpu-b", "gpu-c"].index(command[1])
        assert f"distributed.process_id={process}" in command[2]
        assert "distributed.num_processes=3" in command[2]
        assert "distributed.coordinator_address=gpu-a:9999" in command[2]


@pytest.mark.parametrize("script", ["tpu_pod.sh", "gpu_hosts.sh"])
def test_launch_scripts_reject_a_missing_config(script):
    result = _dry_run(
        script, "configs/missing.yaml", TPU_NAME="t", ZONE="z", HOSTS="h"
    )
    assert result.returncode == 2
    assert "configs/missing.yaml not found" in result.stderr
