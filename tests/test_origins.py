"""Every figure says where it came from: the server under test found as a process on this host (or
not), serve-bench's MFU only from the server's given or measured device and precision, and claim
sentences that say so when a figure rests on an assumption."""

import os
import socket
import threading
from http.server import ThreadingHTTPServer

import pytest

from harness.errors import UserError
from harness.measure.energy import EnergyReading, Meter
from harness.serve.bench import ServeRequest
from harness.serve.server import CpuShareMeter, ServerFacts, find_server, listening_pid, server_peak
from harness.verdicts.claims import Claim, check_capacity, check_speedup
from tests.helpers import make_llm_point, make_point


@pytest.fixture
def listener():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(("127.0.0.1", 0))
    s.listen()
    yield s.getsockname()[1]
    s.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="no /proc/net/tcp (not Linux)")
def test_the_process_listening_on_the_port_is_found(listener):
    assert listening_pid(listener) == os.getpid()
    assert listening_pid(free_port()) is None


@pytest.mark.skipif(not os.path.exists("/proc/net/tcp"), reason="no /proc/net/tcp (not Linux)")
def test_a_local_server_is_measured_a_remote_or_absent_one_is_not(listener):
    here = find_server(f"http://127.0.0.1:{listener}", "auto", None, None, None)
    assert here.pid == os.getpid() and here.device_type == "cpu" and here.devices == 1
    assert here.origin["device"].startswith("measured: pid")
    remote = find_server("http://10.1.2.3:8000", "auto", "bf16", None, None)
    assert remote.pid is None and remote.origin["process"] == "not on this host: 10.1.2.3"
    absent = find_server(f"http://127.0.0.1:{free_port()}", "auto", "bf16", None, None)
    assert absent.pid is None and "no process on this host listens" in absent.origin["process"]
    off = find_server(f"http://127.0.0.1:{listener}", "none", "bf16", None, None)
    assert off.pid is None and off.origin["process"] == "not looked for: --device none"


def test_mfu_needs_the_servers_precision_and_device():
    remote = ServerFacts(origin={"process": "not on this host: x"})
    assert server_peak(remote) == (None, "not computed: the server's precision is not known (give --server-precision)")
    remote.precision = "bf16"
    assert "device is not known" in server_peak(remote)[1] and server_peak(remote)[0] is None
    remote.device_name, remote.devices = "NVIDIA H100 SXM5 80GB", 8
    peak, source = server_peak(remote)
    assert peak == pytest.approx(8 * 989.4) and "given: --server-device" in source
    no_count = ServerFacts(precision="bf16", device_name="NVIDIA H100 SXM5 80GB")
    assert "number of the server's devices is not known" in server_peak(no_count)[1]


def test_a_local_cpu_server_gets_the_peak_of_its_own_cores():
    """The peak is the server process's (its CPU affinity), not the client's: pid 1 may run on every core."""
    facts = ServerFacts(pid=1, device_type="cpu", devices=1, precision="fp32")
    peak, source = server_peak(facts)
    if peak is None:
        pytest.skip(f"no computed CPU peak here: {source}")
    assert f"{len(os.sched_getaffinity(1))} cores" in source or "cores" in source
    assert "measured: the server process's device" in source


class FakePackage(Meter):
    name = "rapl"

    def stop(self) -> EnergyReading:
        return EnergyReading(True, 100.0, 2.0, "package", "RAPL package counter")


def test_cpu_share_meter_charges_the_server_its_share_of_busy_cpu_time(tmp_path):
    proc = tmp_path
    (proc / "42").mkdir()
    tick = os.sysconf("SC_CLK_TCK")

    def write(server_ticks: int, busy_ticks: int) -> None:
        # pid (comm) state ppid ... utime(14) stime(15) cutime(16) cstime(17)
        (proc / "42" / "stat").write_text(f"42 (srv) S 1 1 1 0 -1 0 0 0 0 0 {server_ticks} 0 0 0 20 0\n")
        (proc / "stat").write_text(f"cpu {busy_ticks} 0 0 500 0 0 0 0 0 0\n")

    write(0, 0)
    m = CpuShareMeter(FakePackage(), 42, proc)
    m.start()
    write(tick // 4, tick)  # the server used a quarter of the busy CPU time
    r = m.stop()
    assert r.measured and r.joules == pytest.approx(25.0) and "share of busy CPU time (25%" in r.method


def test_serve_bench_refuses_an_unknown_server_device():
    req = ServeRequest(url="http://127.0.0.1:8000", model="m", server_device="Frobnicator 9000")
    with pytest.raises(UserError, match="--server-device 'Frobnicator 9000' matches no row"):
        req.check()
    with pytest.raises(UserError, match="--server-devices"):
        ServeRequest(url="http://127.0.0.1:8000", model="m", server_devices=0).check()
    assert ServeRequest(url="http://127.0.0.1:8000", model="m").precision is None  # no default precision


def test_every_sentence_built_on_an_assumption_says_so():
    """A claim walked over results with assumed scaling, assumed watts and no server device: each
    sentence that uses such a figure carries the word."""
    estimated = make_point(
        precision="fp16",
        mfu=0.3,
        mfu_precision="fp16",
        mfu_peak_tflops=989.4,
        joules_per_pflop=2000.0,
        energy={"measured": False, "estimate": True, "joules": 10.0, "scope": "device", "method": "assumed 700 W"},
    )
    served = make_llm_point(
        precision="not given",
        served={
            "mfu": None,
            "mfu_not_computed": "not computed: the server's device is not known (give --server-device)",
        },
    )
    v = check_capacity(Claim("c", "capacity", "", "", {"p": 11000, "precision": "fp16"}), [estimated, served])
    uses_energy = [s for s in v.steps if "J/PFLOP" in s]
    assert uses_energy and all("ESTIMATED" in s for s in uses_energy)
    fleet = [s for s in v.steps if " TFLOPS dense = " in s]
    assert fleet and all("an example device: the claim names none" in s for s in fleet)
    assert any("device is not known" in why for _, _, why in v.not_comparable)
    values = {"before_s": 3600, "after_s": 60, "devices_before": 1, "devices_after": 8}
    s = check_speedup(Claim("s", "speedup", "", "", values), [])
    scaled = [t for t in [*s.steps, s.verdict] if ("devices" in t and "->" in t) or "explain" in t]
    assert scaled and all("assum" in t for t in scaled)


def test_served_mfu_and_energy_only_from_the_servers_own_facts(invoke, tmp_path):
    """serve-bench against a server in this very process (found by its port): without
    --server-precision no MFU; with it, the peak of this process's cores (measured); --device none:
    not looked for, so the device is not known and there is no MFU."""
    from harness.results.schema import read_result
    from tests.test_serve import Handler, serve_bench

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.mode = "ok"
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}"
    try:
        runs = {
            "none given": serve_bench(invoke, url, tmp_path / "a", "--tokenizer", "llm-tiny"),
            "precision": serve_bench(
                invoke, url, tmp_path / "b", "--tokenizer", "llm-tiny", "--server-precision", "fp32"
            ),
            "not looked": serve_bench(
                invoke, url, tmp_path / "c", "--tokenizer", "llm-tiny", "--server-precision", "fp32", "--device", "none"
            ),
        }
    finally:
        server.shutdown()
    points = {}
    for name, r in runs.items():
        assert r.exit_code == 0, r.output
        (f,) = (tmp_path / {"none given": "a", "precision": "b", "not looked": "c"}[name] / "r").glob("*.json")
        points[name] = read_result(f).points[0]
    p = points["none given"]
    assert p.served["mfu"] is None and "precision is not known" in p.served["mfu_not_computed"]
    assert p.precision == "not given" and p.served["origins"]["process"].startswith("measured: pid")
    p = points["precision"]
    if p.mfu_peak_tflops is not None:  # a CPU whose peak can be computed here
        assert p.served["mfu"] is not None and "measured: the server process's device" in p.mfu_peak_source
        assert p.served["origins"]["precision"] == "given: --server-precision"
    p = points["not looked"]
    assert p.served["mfu"] is None and "device is not known" in p.served["mfu_not_computed"]
    assert p.energy is None or not p.energy["measured"]
    assert p.served["origins"]["process"] == "not looked for: --device none"


def test_outputs_compared_with_themselves_are_not_a_pass():
    import numpy as np

    from harness.measure.agreement import agreement

    out = np.ones((2, 5), np.float32)
    a = agreement(out, out, "fp32", "classify")
    assert a["passed"] is None and a["checked"] == "not checked (no independent reference)"
    assert agreement(out, out.copy(), "fp32", "classify")["passed"] is True


def test_an_onnx_file_on_ort_cpu_is_checked_against_a_second_unfused_execution(invoke, tmp_path, monkeypatch):
    """The reference is a second session with graph optimizations off: it agrees on a sound file, and a
    reference that disagrees fails the check (so the check can fail)."""
    from harness.vision import onnx_model as ox
    from tests.test_byo_models import FAST, FRAMES, TinyYolo, export, result

    f = export(TinyYolo(), tmp_path / "yolo.onnx", (1, 3, 64, 96))
    r = invoke("run", f, "--task", "detect", *FAST, *FRAMES, "--out", tmp_path / "ok")
    assert r.exit_code == 0, r.output
    (p,) = result(tmp_path / "ok").points
    assert "graph optimizations off" in p.agreement["reference"] and p.agreement["passed"] is True

    real = ox.session

    class Skewed:  # the reference session, its outputs scaled: a disagreeing second execution
        def __init__(self, sess):
            self.sess = sess

        def __getattr__(self, name):
            return getattr(self.sess, name)

        def run(self, names, feeds, *args):
            return [o * 1.5 + 1.0 for o in self.sess.run(names, feeds, *args)]

    def session(om, device_type, engine="onnxruntime", optimize=True):
        sess, s = real(om, device_type, engine, optimize)
        return (sess if optimize else Skewed(sess)), s

    monkeypatch.setattr(ox, "session", session)
    r = invoke("run", f, "--task", "detect", *FAST, *FRAMES, "--out", tmp_path / "bad")
    assert r.exit_code == 0, r.output
    (p,) = result(tmp_path / "bad").points
    assert p.agreement["passed"] is False and "accuracy_check_failed" in p.flags
