"""Registration (gado_bids.preprocessing.registration) repeats exactly and finds a known move."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Run in a fresh process whose ITK has 2 threads (the thread count is fixed when ITK loads): the
# template at 2 mm, and a copy of it moved by a known rotation and shift, registered twice.
_TWICE = textwrap.dedent("""
    import json, sys, tempfile
    from pathlib import Path
    import ants, numpy as np
    from gado_bids import runtime
    from gado_bids.preprocessing import registration
    from gado_bids.preprocessing.template import template_t1
    runtime.seed_ants(42)
    fixed = ants.resample_image(registration.to_ants(template_t1()), (2, 2, 2), False, 0)
    move = ants.create_ants_transform(transform_type="AffineTransform", dimension=3)
    angle = np.deg2rad(6.0)
    move.set_parameters([np.cos(angle), -np.sin(angle), 0, np.sin(angle), np.cos(angle), 0,
                         0, 0, 1, 4.0, -3.0, 2.0])
    move.set_fixed_parameters(ants.get_center_of_mass(fixed))
    moving = move.apply_to_image(fixed, reference=fixed)  # moving(p) = fixed(move(p))
    points = np.argwhere(fixed.numpy() > 0)[::50]
    points = [ants.transform_index_to_physical_point(fixed, tuple(int(i) for i in p)) for p in points]
    runs = []
    for _ in range(2):
        with tempfile.TemporaryDirectory() as work:
            found = ants.read_transform(registration.register(fixed, moving, "AffineFast",
                                                              Path(work)))
            # found maps fixed points into moving space; moving(q) = fixed(move(q)), so the
            # true map is move's inverse
            inverse = move.invert()
            error = np.mean([np.linalg.norm(np.subtract(found.apply_to_point(p),
                                                        inverse.apply_to_point(p)))
                             for p in points])
            runs.append({"parameters": [float(v) for v in found.parameters],
                         "error_mm": float(error)})
    # the same registration side by side with the reverse one, as a session's two run
    with tempfile.TemporaryDirectory() as work:
        both = registration.register_side_by_side(
            [(fixed, moving, "AffineFast", None), (moving, fixed, "AffineFast", None)], Path(work))
        side = [float(v) for v in ants.read_transform(both[0].transform).parameters]
        timed = all(b.seconds > 0 and b.peak_memory_gb > 0.05 for b in both)
    print(json.dumps({"runs": runs, "side_by_side": side, "timed": timed}))
""")


@pytest.fixture(scope="module")
def two_registrations():
    environment = {**os.environ, "ITK_GLOBAL_DEFAULT_NUMBER_OF_THREADS": "2",
                   "PYTHONPATH": str(REPO)}
    child = subprocess.run([sys.executable, "-c", _TWICE], capture_output=True, text=True,
                           env=environment, timeout=600)
    assert child.returncode == 0, child.stderr
    return json.loads(child.stdout.strip().splitlines()[-1])


def test_the_same_registration_twice_gives_the_same_transform(two_registrations):
    """With 2 ITK threads and a fixed seed, Mattes mutual information alone gave transforms that
    differed in the third decimal from run to run."""
    first, second = two_registrations["runs"]
    assert first["parameters"] == second["parameters"]


def test_registration_finds_a_known_move_within_a_millimetre(two_registrations):
    runs = two_registrations["runs"]
    assert all(run["error_mm"] < 1.0 for run in runs), runs


def test_registrations_side_by_side_give_what_each_gives_alone(two_registrations):
    """A session's two registrations run at once on 2 threads; neither may change for it, and
    each reports its own time and its child's memory for the stage log."""
    assert two_registrations["side_by_side"] == two_registrations["runs"][0]["parameters"]
    assert two_registrations["timed"]


def test_a_failed_registration_says_why(tmp_path):
    """The child's own error reaches the session's error message."""
    import ants
    import numpy as np
    from gado_bids.preprocessing import registration
    image = ants.from_numpy(np.random.default_rng(0).random((20, 20, 20)).astype(np.float32))
    said = "^NoSuchTransform registration failed: ValueError: NoSuchTransform does not exist$"
    with pytest.raises(RuntimeError, match=said):
        registration.register(image, image, "NoSuchTransform", tmp_path)
