"""A private spamd on a free loopback port, for the spamc tests: started by the test,
stopped with it. Local tests only, no Bayes, no user config, like preview's own check."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

from conftest import free_port


def find_spamd() -> str | None:
    """spamd lives in sbin, which a user's PATH may lack."""
    return shutil.which("spamd") or shutil.which("spamd", path="/usr/sbin:/usr/local/sbin")


class Spamd:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.port = 0
        self.process: subprocess.Popen | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 60.0) -> Spamd:
        self.port = free_port()
        argv = [
            find_spamd() or "spamd",
            "--local", "--nouser-config", "--listen", self.address, "--allowed-ips", "127.0.0.1",
            "--max-children", "1", "--min-children", "1", "--syslog", "stderr",
            "--pidfile", str(self.folder / "spamd.pid"), "--cf", "use_bayes 0",
        ]  # fmt: skip
        if os.geteuid() == 0:
            argv += ["--username", "nobody"]  # spamd will not scan as root
        log = (self.folder / "spamd.log").open("wb")
        env = {**os.environ, "LANG": "C", "LC_ALL": "C"}
        self.process = subprocess.Popen(argv, stdout=log, stderr=log, env=env)
        log.close()
        deadline = time.monotonic() + timeout
        ping = [shutil.which("spamc") or "spamc", "-d", "127.0.0.1", "-p", str(self.port), "-K"]
        while subprocess.run(ping, capture_output=True).returncode != 0:
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"spamd did not start: {self.log()[-2000:]}")
            time.sleep(0.1)
        return self

    def log(self) -> str:
        return (self.folder / "spamd.log").read_text(errors="replace")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
