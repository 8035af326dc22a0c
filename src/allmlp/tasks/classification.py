"""Image classification: data tensors, augmentation, cross-entropy loss, accuracy, confusion matrix."""

from __future__ import annotations

import warnings

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..config import Config
from ..data.batches import TensorBatches, iterate_in_order
from ..data.images import black_level, get_dataset, load_images, normalize, random_crop_flip, resize_images
from ..data.mixing import mix_batch, random_erasing
from ..experiment import Experiment
from ..models import create_model, model_kwargs


def data_model_args(cfg: Config, in_chans: int, img_size: int, num_classes: int) -> dict:
    """The model arguments the data decides (shape and class count) that the config does not set itself."""
    accepted = model_kwargs(cfg.model.name)
    derived = {"num_classes": num_classes, "n_classes": num_classes, "in_chans": in_chans,
               "img_size": img_size, "img_shape": [in_chans, img_size, img_size]}
    return {key: value for key, value in derived.items() if key in accepted and key not in cfg.model.args}


def load_splits(cfg: Config) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Normalised float images and labels per split; `data.val_size` images of train become `val`."""
    spec = get_dataset(cfg.data.name)
    raw = load_images(cfg.data.name, cfg.data.path or None)
    splits = {k: (normalize(x, spec.mean, spec.std), y) for k, (x, y) in raw.items()}
    if cfg.data.val_size > 0:
        x, y = splits["train"]
        val_size = cfg.data.val_size
        if val_size >= len(x):  # e.g. the presets' 5,000 on a small folder of images: a tenth of it instead
            val_size = len(x) // 10
            if val_size == 0:
                raise ValueError(f"data.val_size={cfg.data.val_size} leaves no training images (train has {len(x)})")
            warnings.warn(f"data.val_size={cfg.data.val_size} is not below the {len(x)} training images: holding out "
                          f"{val_size} (a tenth) for validation instead", stacklevel=2)
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1234))
        held, kept = order[:val_size], order[val_size:]
        splits["val"] = (x[held], y[held])
        splits["train"] = (x[kept], y[kept])
    return splits


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, batch_size: int, hflip: bool = False,
            img_size: int = 0) -> torch.Tensor:
    """Logits for all images, in batches; `hflip` averages them with the mirrored images' (test-time flip);
    `img_size` resizes each batch first (`data.img_size`)."""
    device = next(model.parameters()).device

    def logits(x: torch.Tensor) -> torch.Tensor:
        x = resize_images(x.to(device), img_size)
        out = model(x).float()
        return (out + model(x.flip(3)).float()) / 2 if hflip else out

    return torch.cat([logits(x).cpu() for (x,) in iterate_in_order([images], batch_size)])


def classification_metrics(logits: torch.Tensor, labels: torch.Tensor) -> dict:
    """Mean cross-entropy and accuracy."""
    return {"loss": F.cross_entropy(logits, labels).item(),
            "acc": (logits.argmax(1) == labels).float().mean().item()}


def build(cfg: Config, model: nn.Module | None = None) -> Experiment:
    """Experiment for an image classifier on the configured data set (`model`: one built in Python instead)."""
    if cfg.optim.manual_backprop:
        raise ValueError(f"optim.manual_backprop=true: only the Bengio language models have hand-written "
                         f"gradients, not {cfg.model.name}")
    spec = get_dataset(cfg.data.name)
    splits = load_splits(cfg)
    cfg.model.args.update(data_model_args(cfg, spec.shape[0], cfg.data.img_size or spec.shape[1],
                                          len(spec.classes)))  # recorded: the run folder rebuilds the same model
    model = create_model(cfg.model.name, **cfg.model.args) if model is None else model
    data = cfg.data
    border = black_level(spec.mean, spec.std)  # crops pad with black, as the images' own background
    mixing = data.mixup_alpha > 0 or data.cutmix_alpha > 0

    def augment(batch, generator):
        # resize, crop + flip, erase, then mix (soft labels): every draw from this batch's own generator
        images, labels = batch
        images = resize_images(images, data.img_size)
        if data.augment:
            images = random_crop_flip(images, data.crop_padding, data.hflip, generator, border)
        images = random_erasing(images, data.random_erasing, generator)
        if mixing:
            images, labels = mix_batch(images, labels, len(spec.classes), generator, data.mixup_alpha,
                                       data.cutmix_alpha, data.mix_prob)
        return images, labels

    transform = data.augment or data.img_size > 0 or data.random_erasing > 0 or mixing
    train = TensorBatches(splits["train"], data.batch_size, cfg.train.seed, augment if transform else None)

    def loss_fn(model, batch):
        images, labels = batch  # labels: class ids (B,), or soft targets (B, K) under mixup / cutmix
        logits = model(images)
        loss = F.cross_entropy(logits, labels, label_smoothing=cfg.optim.label_smoothing)
        return loss, {}

    def evaluate(model, names=("val",)):
        out = {}
        for split in [s for s in names if s in splits]:
            x, y = splits[split]
            logits = predict(model, x, data.eval_batch_size, data.eval_hflip, data.img_size)
            for key, value in classification_metrics(logits, y).items():
                out[f"{split}/{key}"] = value
        return out

    return Experiment(model, loss_fn, train, evaluate, final_evaluate=lambda model: evaluate(model, ("val", "test")))


def confusion_matrix(predictions: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """counts[true, predicted]."""
    return torch.bincount(labels * num_classes + predictions, minlength=num_classes**2).view(num_classes, num_classes)


def evaluate_run(model: nn.Module, cfg: Config, run_dir, split: str = "test", tokenizer=None) -> dict:
    """Accuracy, per-class accuracy and the confusion matrix (counts[true, predicted], under "confusion_matrix",
    with its "classes") of a trained classifier."""
    spec = get_dataset(cfg.data.name)
    splits = load_splits(cfg)
    if split not in splits:
        raise ValueError(f"split {split!r} not available; choose one of {', '.join(splits)}")
    x, y = splits[split]
    logits = predict(model, x, cfg.data.eval_batch_size, cfg.data.eval_hflip, cfg.data.img_size)
    matrix = confusion_matrix(logits.argmax(1), y, len(spec.classes))
    per_class = (matrix.diag().float() / matrix.sum(1).clamp(min=1)).tolist()
    return {**{f"{split}/{k}": v for k, v in classification_metrics(logits, y).items()},
            "per_class_acc": dict(zip(spec.classes, per_class)), "confusion_matrix": matrix,
            "classes": list(spec.classes)}
