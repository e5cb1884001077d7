"""DeiT distillation: a student trained against a trained teacher's checkpoint ends with
its distillation head agreeing with the teacher more than at the start; timm teachers
load too."""

import pytest
import torch

import vitgraph
from vitgraph.train.data import load_digits, normalize
from vitgraph.train.teacher import dense_targets, load_teacher, teacher_logits

TEACHER = {"image_size": 16, "patch": 4, "dim": 48, "depth": 2, "heads": 4, "mlp_ratio": 2.0}
STUDENT = {
    "image_size": 16,
    "patch": 4,
    "dim": 32,
    "depth": 1,
    "heads": 2,
    "mlp_ratio": 2.0,
    "distilled": True,
    "drop_path_rate": 0.0,
    "classes": 10,
}


@torch.no_grad()
def _agreement(student, teacher, images) -> float:
    student.train()  # train mode returns (class, distillation) logits; no dropout here
    _, dist = student(images)
    return (dist.argmax(-1) == teacher_logits(teacher, images).argmax(-1)).float().mean().item()


def test_a_distilled_student_agrees_with_its_teacher_more_than_at_start(tmp_path):
    quiet = dict(data="digits", progress=False, log=lambda line: None)
    vitgraph.train(
        "vit",
        overrides=TEACHER,
        epochs=4,
        batch_size=32,
        lr=3e-3,
        out=str(tmp_path / "teacher"),
        **quiet,
    )
    teacher = load_teacher(str(tmp_path / "teacher" / "last.safetensors"), None, 10, "cpu")
    graph = vitgraph.load("deit", overrides=STUDENT)
    torch.manual_seed(0)  # the trainer's initial weights (seed 0)
    start = graph.build()
    result = vitgraph.train(
        "deit",
        overrides=STUDENT,
        epochs=4,
        batch_size=32,
        lr=3e-3,
        teacher=str(tmp_path / "teacher" / "last.safetensors"),
        distill="hard",
        **quiet,
    )
    val = normalize(load_digits(graph.input_shape).val.images)
    before, after = _agreement(start, teacher, val), _agreement(result.model, teacher, val)
    print(f"\nagreement of the distillation head with the teacher: {before:.3f} -> {after:.3f}")
    assert after > before + 0.3


def test_a_timm_teacher_gives_class_logits_and_per_patch_targets():
    teacher = load_teacher("timm:test_vit", None, 10, "cpu")
    x = torch.randn(2, 3, 160, 160)
    assert teacher_logits(teacher, x).shape == (2, 10)
    dense = dense_targets(teacher, x, (4, 4))  # resampled from timm's 10x10 grid
    assert dense.shape == (2, 16, 10)
    assert torch.allclose(dense.sum(-1), torch.ones(2, 16), atol=1e-5)


def test_a_spec_teacher_without_weights_is_refused():
    with pytest.raises(ValueError, match="needs --teacher-checkpoint"):
        load_teacher("vit_ti_16", None, 10, "cpu")
