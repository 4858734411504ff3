"""The training run's settings, one place for their defaults: gadosynth-train's options take
theirs from here (cli.train), and the run records them in its checkpoints and summary."""
from dataclasses import dataclass, field


@dataclass
class TrainConfig:
    model: str = "attention-unet"
    formulation: str = "enhancement"  # networks.FORMULATIONS; the grid follows (GRIDS)
    width: int = 16
    epochs: int = 100
    batch_size: int = 2
    crop_size: int = 64
    learning_rate: float = 5e-4
    seed: int = 0
    n_validation: int = 7
    validate_every: int = 1
    augmentation: float = 1.0
    init: str = "scratch"  # scratch | bundled | path to a weights file
    loss: str = "mse"  # mse | l1 (the paper's)
    blur_matched: bool = True  # compare thick-slice targets with the output blurred like them
    weight_3d: float = 2.0  # weight of pairs whose target is a sharp 3D scan
    enhancement_l1: float = 0.0  # sparsity of the enhancement map (enhancement formulation)
    # the sparsity term counts only E above this level: a broad tissue-wide part below it is free
    enhancement_free_level: float = 0.0
    # added to the map's gradient where its softplus's dies (networks.enhancement_from_head)
    enhancement_gradient_floor: float = 0.0
    distribution_weight: float = 0.0  # weight of the crop's sorted-value (histogram) term
    tissue_weight: float = 0.0  # weight of the crop's GM / WM mean-intensity term
    tissue_loss_form: str = "means"  # means | contrast (GM - WM): losses.tissue_error
    tissue_cores: str = "GM,WM"  # the template cores the tissue term reads, WM last
    tissue_trains_curve: bool = False  # the tissue term's gradient also reaches the curve
    comparison_blur: float = 0.0  # sigma (voxels) averaging both images before the voxel error
    curve_loss: str = "quantile"  # quantile | mse: how the intensity curve learns (see below)
    curve_voxels: str = "all"  # all | unenhanced | after_map: what the quantile loss matches
    # all | gadolinium-only | 3D: the pairs whose ce -> reference distribution the curve learns
    # (training/contrast.py; 3D: those with a sharp 3D reference, among the training pairs);
    # sharp targets keep their identity term either way
    curve_pairs: str = "all"
    # all | gadolinium-only: the real pairs training crops come from (gadolinium-only implies the
    # curve's); simulated samples are built on the 3D pairs among them
    training_pairs: str = "all"
    freeze_curve: bool = False  # keep the initial weights' intensity curve: train the map alone
    # "" | a bundled model's name | an enhancement weights file: a scratch network of any
    # architecture starts from that network's layers (with freeze_curve its curve is kept)
    borrow_from: str = ""
    borrow: str = "curve"  # curve | shared: the intensity curve only, or every shared layer
    # > 0: from the normalisation's anchor up to this multiple of it, no curve slope below the one
    # under the anchor (IntensityCurve's top_floor)
    curve_top_floor: float = 0.0
    simulated_fraction: float = 0.0  # share of training inputs with simulated enhancement
    simulated_on_ce: float = 0.0  # share of those built on the real ce scan, not the target
    # brain | brain+enhancement: where a simulated sample's loss is computed (training/data.py)
    simulated_loss_mask: str = "brain"
    # share of simulated samples that also get a dura rim around the pair's own brain mask, as a
    # looser strip keeps it; scored there (target: background) whatever simulated_loss_mask says
    simulated_rim: float = 0.0
    max_minutes: float = 0.0  # > 0: fewer epochs so that training ends within this time
    n_validation_3d: int = 0  # of the n_validation, how many with a sharp 3D reference
    validation_subjects: list = field(default_factory=list)  # fixed list overrides n_validation
