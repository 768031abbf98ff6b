"""Step 2 and the evaluation name the image whose model output is not finite instead of crashing deep
inside a post-processor or silently scoring it."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from helpers.recipe import load_example

from modeling_ecom2f import EcoMask2FormerForUniversalSegmentation  # noqa: E402
from modeling_ecom2f.recipe import RecipeError  # noqa: E402
from modeling_ecom2f.recipe.faults import check_finite_outputs, non_finite_images  # noqa: E402


def test_non_finite_images_are_named():
    classes, masks = torch.zeros(3, 2, 4), torch.zeros(3, 2, 5, 5)
    classes[1, 0, 0], masks[2, 1, 3, 3] = float("nan"), float("-inf")
    assert non_finite_images([classes, masks], ["a", "b", "c"]) == ["b", "c"]
    outputs = SimpleNamespace(class_queries_logits=classes, masks_queries_logits=masks,
                              encoder_layers_used=torch.tensor([2, 3, 3]))
    with pytest.raises(RecipeError, match=r"where: the model output at encoder depth\(s\) \[2, 3\] of image\(s\) "
                                          r"\['b', 'c'\] is not finite"):
        check_finite_outputs(outputs, ["a", "b", "c"], where="where")
    check_finite_outputs(SimpleNamespace(class_queries_logits=classes[:1], masks_queries_logits=masks[:1]), ["a"],
                         where="where")  # finite: no error


def _nan_second_image(monkeypatch) -> None:
    """Inference forwards see NaN pixels in the second image of each batch: `forward` and `forward_exits` (step 2
    and the evaluation take every exit from one pass, which does not call `forward`)."""
    for name in ("forward", "forward_exits"):
        original = getattr(EcoMask2FormerForUniversalSegmentation, name)

        def patched(self, pixel_values, *args, _original=original, **kwargs):
            if not self.training and pixel_values.shape[0] > 1:
                pixel_values = pixel_values.clone()
                pixel_values[1] = float("nan")
            return _original(self, pixel_values, *args, **kwargs)

        monkeypatch.setattr(EcoMask2FormerForUniversalSegmentation, name, patched)


@pytest.mark.parametrize("script,split", [("derive_exit_dataset", "train"), ("evaluate_model", "validation")])
def test_step2_and_evaluation_name_the_image(tiny_chain, script, split, monkeypatch, tmp_path, capsys):
    chain = tiny_chain  # built (once) before the patch
    _nan_second_image(monkeypatch)
    with pytest.raises(SystemExit) as info:
        load_example(script).main(chain["disk"] + ["--model_name_or_path", str(chain["paths"]["step1"]),
                                                   "--output_dir", str(tmp_path / "out")])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert f"of image(s) ['synthetic-{split}-000001'] is not finite" in err
