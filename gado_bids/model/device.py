"""Pick the torch device from --device: CUDA when present, CPU otherwise, never a silent surprise."""
import logging

from gado_bids.errors import ExitCode, GadoError

LOG = logging.getLogger(__name__)


def resolve_device(spec: str, cuda_available=None, cuda_count=None):
    """Return a torch.device for 'auto', 'cpu', 'cuda' or 'cuda:N'.

    cuda_available / cuda_count default to what torch reports; tests pass them to exercise the
    CUDA branches on a machine without a GPU.
    """
    import torch
    if cuda_available is None:
        cuda_available = torch.cuda.is_available()
    if cuda_count is None:
        cuda_count = torch.cuda.device_count() if cuda_available else 0
    if spec == "cpu":
        return torch.device("cpu")
    if spec == "auto":
        if cuda_available:
            return torch.device("cuda:0")
        LOG.info("no CUDA GPU found: running on CPU (pass --gpus all to docker, --nv to "
                 "singularity, to use one)")
        return torch.device("cpu")
    if not cuda_available:
        raise GadoError(f"--device {spec} was asked for, but torch sees no CUDA GPU here: use "
                        "--device cpu or auto, or expose the GPU (docker --gpus all, "
                        "singularity --nv)", ExitCode.USAGE)
    index = int(spec.split(":")[1]) if ":" in spec else 0
    if index >= cuda_count:
        raise GadoError(f"--device {spec}: only {cuda_count} CUDA GPU(s) visible "
                        f"(indices 0..{cuda_count - 1})", ExitCode.USAGE)
    return torch.device(f"cuda:{index}")
