"""A single-node SLURM cluster in a temporary folder, to try `hydra/launcher=slurm` and to test it.

    eval "$(python tests/helpers/local_slurm.py start)"   # prints `export SLURM_CONF=...`
    sinfo; python -m vae_lightning.train -m hydra/launcher=slurm hydra.launcher.partition=debug ...
    python tests/helpers/local_slurm.py stop               # the cluster of $SLURM_CONF (or: stop <folder>)

One `munged`, one `slurmctld` and one `slurmd`, started from this machine's Debian packages (`apt-get install
slurm-wlm munge`). Everything they write lives in the folder: the generated `slurm.conf` (this machine's hostname,
CPUs and memory as `slurmd -C` reports them, one partition `debug`), the munge key and socket, state, spool, logs
and job-completion records. Clients find the cluster through `SLURM_CONF`. Root is needed for `slurmd` to start
jobs as their user; the tests run as root in CI.

Settings differ from a production cluster's only where a test would otherwise wait: a requeued job becomes
eligible again after `cred_expire` (6 s; SLURM's default is 2 minutes), the scheduler looks at pending jobs every
2 s (60 s) and a signalled job gets `KillWait` (20 s; 30 s) before SIGKILL. There is no accounting database:
`sacct` answers only `sacct --completion` (from the job-completion file), so submitit, whose `sacct` calls fail
(it warns "Bypassing sacct error"), learns that a job ended from the result file the job writes.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel", "srun")
PARTITION = "debug"
KILL_WAIT_S = 20
CRED_EXPIRE_S = 6


class SlurmUnavailable(RuntimeError):
    """The SLURM or munge programs are not installed (the message is one line saying what to install)."""


def find_program(name: str) -> str | None:
    """A daemon or client program: on PATH, or in the sbin folders that a non-root PATH lacks."""
    path = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin", "/usr/local/sbin"])
    return shutil.which(name, path=path)


def missing_programs() -> list[str]:
    return [name for name in (*DAEMONS, *CLIENTS) if find_program(name) is None]


def check_installed() -> None:
    missing = missing_programs()
    if missing:
        raise SlurmUnavailable(f"a local SLURM needs {', '.join(missing)} (not found); install Debian's packages: "
                               "apt-get install slurm-wlm munge")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LocalSlurm:
    """One single-node cluster rooted at `folder`: `start()`, then `env` for client commands, then `stop()`."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        self.conf = self.folder / "slurm.conf"
        self.pids = self.folder / "pids"
        self.node = socket.gethostname().split(".")[0]

    @property
    def env(self) -> dict[str, str]:
        """The environment of a client command (sbatch, squeue, ...) talking to this cluster."""
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def start(self, timeout: float = 60) -> None:
        """Write the configuration, start the three daemons and wait until the node is idle."""
        check_installed()
        if os.geteuid() != 0:
            raise SlurmUnavailable("a local SLURM needs root (slurmd starts each job as its user); run as root, "
                                   "as CI does")
        key = self.write_config()
        key_dir = key.parent
        munge = self.folder / "munge"
        self.pids.write_text("")
        self._spawn("munged", "--foreground", f"--key-file={key}", f"--socket={munge / 'munge.socket'}",
                    f"--pid-file={munge / 'munged.pid'}", f"--seed-file={key_dir / 'munged.seed'}",
                    f"--log-file={self.folder / 'log' / 'munged.log'}")
        self._wait(lambda: (munge / "munge.socket").exists(), timeout, "munged did not create its socket")
        self._spawn("slurmctld", "-D", "-i")
        self._wait(lambda: self._client("scontrol", "ping").returncode == 0, timeout, "slurmctld does not answer")
        self._spawn("slurmd", "-D")
        self._wait(lambda: self.node_state() == "idle", timeout, f"node {self.node} did not become idle")

    def write_config(self) -> Path:
        """The folders, `slurm.conf` and a new munge key (returned); nothing is started."""
        for sub in ("state", "spool", "log", "munge"):
            (self.folder / sub).mkdir(parents=True, exist_ok=True)
        key_dir = self.folder / "munge-key"
        key_dir.mkdir(mode=0o700, exist_ok=True)
        # munged wants its socket's folders searchable by everyone and its key readable only by itself
        for path in (self.folder, self.folder / "munge", self.folder / "log"):
            path.chmod(0o755)
        key = key_dir / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o600)
        (self.folder / "plugstack.conf").write_text("")
        self.conf.write_text(self._slurm_conf())
        return key

    def cancel_all(self) -> None:
        """Cancel every job and wait (a bounded time) until the queue is empty."""
        if self.conf.exists() and find_program("scancel") and self._client("scontrol", "ping").returncode == 0:
            self._client("scancel", f"--partition={PARTITION}")
            self._wait(lambda: not self._client("squeue", "-h").stdout.strip(), KILL_WAIT_S + 10, None)

    def stop(self, timeout: float = 60) -> None:
        """Cancel every job, then end every daemon that `start` started (SIGTERM, then SIGKILL)."""
        self.cancel_all()
        pids = [int(p) for p in self.pids.read_text().split()] if self.pids.exists() else []
        for pid in reversed(pids):  # slurmd, slurmctld, then munged
            _end(pid, timeout)
        self.pids.write_text("")

    def node_state(self) -> str:
        result = self._client("sinfo", "-h", "-n", self.node, "-o", "%T")
        return result.stdout.strip() if result.returncode == 0 else ""

    def _slurm_conf(self) -> str:
        f = self.folder
        user = pwd.getpwuid(os.getuid()).pw_name
        node = subprocess.run([find_program("slurmd") or "slurmd", "-C"], capture_output=True, text=True,
                              check=True).stdout.splitlines()[0]  # NodeName=<host> CPUs=... RealMemory=...
        lines = [
            "ClusterName=vaelocal", f"SlurmctldHost={self.node}", f"SlurmUser={user}", f"SlurmdUser={user}",
            f"SlurmctldPort={_free_port()}", f"SlurmdPort={_free_port()}",
            "AuthType=auth/munge", "CredType=cred/munge",
            f"AuthInfo=socket={f / 'munge' / 'munge.socket'},cred_expire={CRED_EXPIRE_S}",
            f"StateSaveLocation={f / 'state'}", f"SlurmdSpoolDir={f / 'spool'}",
            f"SlurmctldPidFile={f / 'slurmctld.pid'}", f"SlurmdPidFile={f / 'slurmd.pid'}",
            f"SlurmctldLogFile={f / 'log' / 'slurmctld.log'}", f"SlurmdLogFile={f / 'log' / 'slurmd.log'}",
            f"PlugStackConfig={f / 'plugstack.conf'}",
            "ProctrackType=proctrack/linuxproc", "TaskPlugin=task/none", "MpiDefault=none", "SwitchType=switch/none",
            "JobAcctGatherType=jobacct_gather/none", "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/filetxt", f"JobCompLoc={f / 'log' / 'jobcomp.txt'}",
            "SchedulerType=sched/backfill", "SchedulerParameters=sched_interval=2,bf_interval=5",
            "SelectType=select/cons_tres", "SelectTypeParameters=CR_CPU_Memory",
            "ReturnToService=2", f"KillWait={KILL_WAIT_S}", "MinJobAge=600", "DefMemPerCPU=1000",
            f"{node} State=UNKNOWN",
            f"PartitionName={PARTITION} Nodes={self.node} Default=YES MaxTime=INFINITE State=UP",
        ]
        return "\n".join(lines) + "\n"

    def _spawn(self, daemon: str, *args: str) -> None:
        program = find_program(daemon)
        assert program is not None
        log = open(self.folder / "log" / f"{daemon}.out", "ab")  # noqa: SIM115 - the daemon keeps it
        process = subprocess.Popen([program, *args], stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                   env=self.env, cwd=self.folder, start_new_session=True)
        log.close()
        with self.pids.open("a") as f:
            f.write(f"{process.pid}\n")

    def _client(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([find_program(program) or program, *args], capture_output=True, text=True,
                              env=self.env, timeout=30)

    def _wait(self, ready, timeout: float, failure: str | None) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if ready():
                return
            time.sleep(0.2)
        if failure is not None:
            self.stop()
            logs = "; ".join(f"{p.name}: {_last_line(p)}" for p in sorted((self.folder / "log").glob("*")))
            raise RuntimeError(f"{failure} within {timeout:.0f} s (logs in {self.folder / 'log'}: {logs})")


def _last_line(path: Path) -> str:
    lines = path.read_text(errors="replace").strip().splitlines()
    return lines[-1] if lines else "(empty)"


def _end(pid: int, timeout: float) -> None:
    """SIGTERM, then SIGKILL after `timeout` seconds; reaps the process if it is our child."""
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:  # not our child (started by another `start` process)
            if not Path(f"/proc/{pid}").exists():
                return
        time.sleep(0.1)
    os.kill(pid, signal.SIGKILL)


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("start", "stop"):
        print("usage: local_slurm.py start [FOLDER] | stop [FOLDER]", file=sys.stderr)
        return 2
    try:
        if argv[0] == "start":
            cluster = LocalSlurm(Path(argv[1]) if len(argv) > 1 else Path(tempfile.mkdtemp(prefix="vae-slurm-")))
            cluster.start()
            print(f"export SLURM_CONF={cluster.conf}")
            print(f"# stop it with: python {os.path.relpath(__file__)} stop {cluster.folder}", file=sys.stderr)
        else:
            folder = Path(argv[1]) if len(argv) > 1 else Path(os.environ.get("SLURM_CONF", "")).parent
            if not (folder / "pids").is_file():
                print(f"error: {folder} is not a folder of local_slurm.py start (no pids file)", file=sys.stderr)
                return 2
            LocalSlurm(folder).stop()
    except (SlurmUnavailable, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
