"""Commands that measure the device itself: `peak` (GEMM and copy) and `kernels` (ours vs peers)."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.common import DeviceOpt, OutOpt, SpecOpt, err, out, say, user_errors
from harness.errors import UserError
from harness.inputs import check_writable
from harness.machine.specs import use_spec_file
from harness.results.schema import write_record
from harness.results.session import RESULTS_DIR


@user_errors
def kernels(
    quick: Annotated[bool, typer.Option(help="Quarter-size inputs: a quick look, not the target shapes.")] = False,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Also write the table as JSON here.")] = None,
    device: Annotated[
        str, typer.Option(help="cpu (host kernels vs OpenCV/torch) or cuda[:N] (CUDA kernels vs torch CUDA).")
    ] = "cpu",
) -> None:
    """Benchmark our Numba kernels against the libraries people use, side by side in one run."""
    from harness.cli.tables import kernels_table
    from harness.kernelbench import bench as kernel_bench
    from harness.machine.devices import resolve_device
    from harness.machine.provenance import now_iso

    if out_dir is not None:
        check_writable(out_dir)
    dev, _ = resolve_device(device)
    started = now_iso()
    with err.status("measuring copy bandwidth ...") as status:
        rows, bw = kernel_bench.run(0.25 if quick else 1.0, lambda n: status.update(f"timing {n} ..."), dev)
    machine = kernel_bench.machine(dev)
    out.print(kernels_table(rows, bw))
    out.print(
        f"measured on: {machine['name']}; ISA: {' '.join(machine['isa']) or '-'}; "
        f"SVML (Intel's vector math for Numba): {'in use' if machine['svml'] else 'not in use'}"
    )
    out.print("1st call: our kernel's first call in this process (JIT compile, or loading Numba's on-disk cache).")
    if quick:
        out.print("--quick: shrunken inputs; the targets apply to the full shapes.")
    if out_dir is not None:
        body = {
            "quick": quick,
            "device": str(dev),
            "machine": machine,
            "copy_bandwidth_gbs": bw,
            "rows": [asdict(r) for r in rows],
        }
        path = write_record(out_dir, "kernels", "modelpower-kernel-bench", started, body)
        out.print(f"written to {path}")


@user_errors
def peak(
    device: DeviceOpt = "auto",
    out_dir: OutOpt = RESULTS_DIR,
    spec: SpecOpt = None,
) -> None:
    """Measure the device's own peaks (dense GEMM per precision, copy bandwidth) beside its nameplate."""
    from harness.cli.tables import peak_table
    from harness.machine.devices import resolve_device
    from harness.machine.provenance import now_iso
    from harness.measure.peak import measure_peaks

    use_spec_file(spec)
    dev, why = resolve_device(device)
    if spec is not None and dev.type == "cpu":
        raise UserError("--spec rows are GPU nameplates; on the CPU the nameplate is computed (`modelpower devices`)")
    check_writable(out_dir)
    say(f"device: {why}")
    started = now_iso()
    with err.status("measuring ...") as status:
        res = measure_peaks(dev, progress=lambda p: status.update(f"measuring {p} ..."))
    out.print(peak_table(res))
    out.print(f"nameplate: {res['nameplate_source']}")
    path = write_record(out_dir, "peak", "modelpower-peak", started, res)
    out.print(f"written to {path}")
