"""Under the CUDA simulator the row top-k kernels run the GPU's block reductions (warp shuffles,
through the simulator's stand-in for the shuffle instruction). A test may swap them for a plain scan
for speed only, by saying so: `@pytest.mark.sim_scan_for_speed("why")`; one that changes it
unmarked fails."""

import pytest
from numba import config


@pytest.fixture(autouse=True)
def block_reductions_are_the_gpus(request):
    if not config.ENABLE_CUDASIM:
        yield
        return
    import kernels.common.rowtopk_cuda as rt

    marked = request.node.get_closest_marker("sim_scan_for_speed") is not None
    rt.SIM_SHUFFLES = not marked
    yield
    used = rt.SIM_SHUFFLES
    rt.SIM_SHUFFLES = True
    assert used is not marked, "SIM_SHUFFLES changed by a test: mark it sim_scan_for_speed, saying why"
