#!/usr/bin/python3
"""Run the gRPC interop suite: one client against one server, for ctest.

    run_interop.py --client {c,c-async,py} --server {c,c-async,py}
                   --transport {unix,tcp}
                   --bin-dir DIR --src-dir DIR [--test_case all]
                   [--skip CASE ...]

Starts the server (C: DIR/interop_server, c-async: the same with its
streaming methods as asynchronous handlers, Python: tests/interop/
interop_server.py) on a unix socket in a fresh temporary directory or on
127.0.0.1:0, waits for its "interop_server: ready" line, runs the client
(C: DIR/interop_client, Python: tests/interop/interop_client.py) against it
and echoes the client's output (c-async: DIR/interop_client_async, the
cases over the asynchronous client API), then stops the server with SIGTERM and checks
that it exits 0 and, on a unix socket, removes its socket file.

Exit status: the client's (non-zero if any case failed), or 1 if the server
did not start or stop cleanly.

Skipped cases (--skip, plus those the chosen server cannot support, see
SERVER_LIMITS) are reported as SKIP; the client then runs once per remaining
case instead of once with --test_case all, and this script prints the
totals.
"""
import argparse
import shlex
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

PYTHON = "/usr/bin/python3"  # Debian's interpreter, which has grpcio

# The cases of interop_client.py / interop_client.c, in their order.
ALL_CASES = [
    "empty_unary", "large_unary", "client_streaming", "server_streaming",
    "ping_pong", "empty_stream", "cancel_after_begin",
    "cancel_after_first_response", "timeout_on_sleeping_server",
    "custom_metadata", "status_code_and_message", "special_status_message",
    "unimplemented_method", "unimplemented_service",
    "client_compressed_unary", "server_compressed_unary",
    "client_compressed_streaming", "server_compressed_streaming"]

# Cases a server cannot pass for reasons outside the code under test.
_NO_COMPRESSED_REQUEST = (
    "the Python server cannot implement CompressedRequest: grpcio does not "
    "tell a handler whether a request message was compressed, so it cannot "
    "reject the uncompressed probe with INVALID_ARGUMENT")
SERVER_LIMITS = {
    "py": {"client_compressed_unary": _NO_COMPRESSED_REQUEST,
           "client_compressed_streaming": _NO_COMPRESSED_REQUEST},
    "c": {},
    "c-async": {},
}

READY_TIMEOUT = 60    # seconds for the server to say it is ready
CLIENT_TIMEOUT = 300  # seconds for one client run
STOP_TIMEOUT = 30     # seconds for the server to exit after SIGTERM

_print_lock = threading.Lock()


def say(line):
    with _print_lock:
        print(line, flush=True)


def child_env():
    env = dict(os.environ)
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # keep the source tree clean
    env["PYTHONUNBUFFERED"] = "1"
    return env


def program(kind, role, args):
    name = "interop_" + role
    if kind == "c":
        return [os.path.join(args.bin_dir, name)]
    if kind == "c-async" and role == "server":
        return [os.path.join(args.bin_dir, name), "--async"]
    if kind == "c-async":
        return [os.path.join(args.bin_dir, name + "_async")]
    return [PYTHON, os.path.join(args.src_dir, "tests", "interop",
                                 name + ".py")]


class Server:
    """The server process; its stdout is echoed by a thread of its own."""

    def __init__(self, cmd):
        self.port = None
        self._events = queue.Queue()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, text=True,
                                     env=child_env())
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self):
        for line in self.proc.stdout:
            line = line.rstrip("\n")
            say(line)
            if "(port " in line:
                self.port = int(line.rsplit("(port ", 1)[1].rstrip(")"))
            if line == "interop_server: ready":
                self._events.put("ready")
        self._events.put("eof")

    def wait_ready(self):
        try:
            event = self._events.get(timeout=READY_TIMEOUT)
        except queue.Empty:
            return "not ready after %d s" % READY_TIMEOUT
        if event != "ready":
            return "exited with %s before it was ready" % self.proc.wait()
        return None

    def stop(self):
        """SIGTERM, then wait; return None or what went wrong."""
        if self.proc.poll() is not None:
            return "exited with %d before SIGTERM" % self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return "still running %d s after SIGTERM" % STOP_TIMEOUT
        self._reader.join(timeout=5)  # its last lines come out first
        return None if rc == 0 else "exited with %d after SIGTERM" % rc


def run_client(cmd):
    """Run one client, echo its output; return (exit code, counts)."""
    counts = {"PASS": 0, "FAIL": 0, "SKIP": 0}
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL,
                           stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, timeout=CLIENT_TIMEOUT, env=child_env())
        out, rc = p.stdout, p.returncode
    except OSError as e:
        out, rc = "run_interop: cannot run the client: %s\n" % e, 1
    except subprocess.TimeoutExpired as e:
        out = e.stdout or ""
        if isinstance(out, bytes):
            out = out.decode(errors="replace")
        out += "run_interop: client killed after %d s\n" % CLIENT_TIMEOUT
        rc = 1
    if rc < 0:  # killed by a signal: report it the way a shell does
        rc = 128 - rc
    for line in out.splitlines():
        say(line)
        word = line.split(" ", 1)[0]
        if word in counts:
            counts[word] += 1
    if rc == 0 and counts["FAIL"]:
        rc = 1  # cannot happen with a well-behaved client
    return rc, counts


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--client", choices=("c", "c-async", "py"),
                    required=True)
    ap.add_argument("--server", choices=("c", "c-async", "py"),
                    required=True)
    ap.add_argument("--transport", choices=("unix", "tcp"), required=True)
    ap.add_argument("--bin-dir", required=True,
                    help="where the C interop_server and interop_client are")
    ap.add_argument("--src-dir", required=True, help="the project's top")
    ap.add_argument("--test_case", default="all", help="a case, or all")
    ap.add_argument("--server-wrapper", default="",
                    help="a command to run the server under, e.g. valgrind")
    ap.add_argument("--skip", action="extend", nargs="+", default=[],
                    metavar="CASE", help="cases not to run")
    args = ap.parse_args()

    wanted = ALL_CASES if args.test_case == "all" else [args.test_case]
    skipped = {c: "skipped by --skip" for c in args.skip}
    skipped.update(SERVER_LIMITS[args.server])
    skipped = {c: why for c, why in skipped.items() if c in wanted}
    if skipped:  # the client runs once per remaining case
        runs = [c for c in wanted if c not in skipped]
    else:
        runs = [args.test_case]

    tmp = tempfile.mkdtemp(prefix="prpc-interop-")
    try:
        if args.transport == "unix":
            sock = os.path.join(tmp, "interop.sock")
            listen = target = "unix:" + sock
        else:
            sock = None
            listen = "127.0.0.1:0"
        say("run_interop: %s client -> %s server over %s"
            % (args.client, args.server, args.transport))
        try:
            server = Server(shlex.split(args.server_wrapper) +
                            program(args.server, "server", args) +
                            ["--listen", listen])
        except OSError as e:
            say("run_interop: cannot run the server: %s" % e)
            return 1
        problem = server.wait_ready()
        if problem is None and sock is None:
            if server.port:
                target = "127.0.0.1:%d" % server.port
            else:
                problem = "did not print its TCP port"
        if problem is not None:
            if server.proc.poll() is None:
                server.proc.kill()
                server.proc.wait()
            say("run_interop: server %s" % problem)
            return 1

        client_rc = 0
        totals = {"PASS": 0, "FAIL": 0, "SKIP": 0}
        try:
            for case in runs:
                rc, counts = run_client(program(args.client, "client", args) +
                                        ["--target", target,
                                         "--test_case", case])
                if rc != 0 and client_rc == 0:
                    client_rc = rc
                for k in totals:
                    totals[k] += counts[k]
        finally:
            problem = server.stop()
        for case in wanted:
            if case in skipped:
                say("SKIP %s: %s" % (case, skipped[case]))
                totals["SKIP"] += 1

        if problem is None and sock is not None and os.path.exists(sock):
            problem = "left its socket file %s behind" % sock
        if problem is not None:
            say("run_interop: server %s" % problem)
        else:
            say("run_interop: server stopped cleanly")
        summary = "%d passed, %d failed" % (totals["PASS"], totals["FAIL"])
        if totals["SKIP"]:
            summary += ", %d skipped" % totals["SKIP"]
        say("run_interop: " + summary)
        if client_rc != 0:
            return client_rc
        return 0 if problem is None else 1
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
