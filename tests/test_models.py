import pytest
import torch

from ackd_bench.errors import AckdError
from ackd_bench.models import build_backbone, canonical_arch


@pytest.mark.parametrize("arch", ["R", "M", "S"])
@pytest.mark.parametrize("bands", [3, 10, 14])
@pytest.mark.parametrize("size,grid", [(64, 2), (120, 4), (128, 4)])
def test_output_contract(arch, bands, size, grid):
    model = build_backbone(arch, bands, num_classes=7).eval()
    with torch.no_grad():
        out = model(torch.randn(2, bands, size, size))
    assert out["tokens"].shape == (2, grid * grid, 512)
    assert out["pooled"].shape == (2, 512)
    assert out["logits"].shape == (2, 7)
    torch.testing.assert_close(out["pooled"], out["tokens"].mean(dim=1))


def test_registry_names():
    assert [canonical_arch(n) for n in ("R", "M", "S")] == ["resnet34", "mobilenetv2", "shufflenetv2"]
    assert canonical_arch("ResNet34") == "resnet34"
    with pytest.raises(AckdError, match="unknown architecture 'vgg16'"):
        canonical_arch("vgg16")


def test_first_convolution_takes_the_band_count():
    model = build_backbone("resnet34", 14, 10)
    assert model.body[0].in_channels == 14 and model.body[0].weight.shape[1] == 14
