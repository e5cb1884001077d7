"""MixToken, MixUp and patch mixing: the labels match what was mixed, area for area."""

import torch

from vitgraph.train import mixing


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_mixtoken_takes_exactly_the_box_from_the_partner_and_labels_follow_the_area():
    rows, cols, batch, classes = 4, 5, 3, 4
    box = mixing.Box(top=1, left=1, bottom=3, right=4, rows=rows, cols=cols)
    tokens = torch.arange(batch)[:, None, None].float().expand(batch, rows * cols, 2)
    mixed = mixing.mix_tokens(tokens, box)
    source = mixed[..., 0].long()  # which sample each token came from
    partner = torch.arange(batch).flip(0)
    from_partner = (source == partner[:, None]) & (partner[:, None] != torch.arange(batch)[:, None])
    assert box.area == 6 and box.kept == 1 - 6 / 20
    assert from_partner[0].sum().item() == 6 and from_partner[1].sum().item() == 0  # middle
    y = torch.nn.functional.one_hot(torch.tensor([0, 1, 2]), classes).float()
    token_y = y[:, None, :].expand(batch, rows * cols, classes)
    mixed_y, mixed_token_y = mixing.mix_token_targets(y, token_y, box)
    # the class label's weight on each source equals that source's share of the tokens
    for b in range(batch):
        shares = torch.bincount(source[b], minlength=classes).float() / (rows * cols)
        assert torch.allclose(mixed_y[b], shares)
        assert torch.equal(mixed_token_y[b].argmax(-1), source[b])


def test_random_box_lies_inside_the_grid_and_reports_its_kept_area():
    for seed in range(20):
        g = _gen(seed)
        lam = mixing.sample_lambda(1.0, g)
        box = mixing.random_box(7, 7, lam, g)
        assert 0 <= box.top <= box.bottom <= 7 and 0 <= box.left <= box.right <= 7
        assert box.mask().sum().item() == box.area
        assert abs(box.kept - (1 - box.area / 49)) < 1e-12


def test_mixup_blends_images_and_labels_with_the_same_weight():
    x = torch.tensor([[1.0], [3.0]])
    y = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    mx, my = mixing.mixup(x, y, 0.75)
    assert torch.equal(mx, torch.tensor([[1.5], [2.5]]))
    assert torch.equal(my, torch.tensor([[0.75, 0.25], [0.25, 0.75]]))


def test_patch_mixing_labels_every_patch_with_the_image_its_pixels_came_from():
    patch, rows, cols = 2, 3, 3
    images = torch.stack([torch.full((1, 6, 6), float(v)) for v in (10, 20, 30, 40)])
    labels = torch.tensor([0, 1, 2, 3])
    box = mixing.Box(0, 1, 2, 3, rows, cols)
    mixed, patch_labels = mixing.patch_mix(images, labels, patch, box)
    cells = mixed.unfold(2, patch, patch).unfold(3, patch, patch)  # (B, 1, 3, 3, p, p)
    for b in range(4):
        for r in range(rows):
            for c in range(cols):
                cell = cells[b, 0, r, c]
                assert cell.min() == cell.max()  # a patch never straddles two images
                assert cell[0, 0].item() == 10 * (patch_labels[b, r * cols + c].item() + 1)
    share_from_partner = (patch_labels != labels[:, None]).float().mean(1)
    assert torch.allclose(share_from_partner, torch.full((4,), 1 - box.kept))
