"""Checker for the U-Net exercise: the valid U-Net's long skip, the encoder map centre-cropped
to the decoder map's size and concatenated with it on the channel axis;
(B, C1, H1, W1), (B, C2, H2, W2) -> (B, C1 + C2, H2, W2), in the maps' dtype.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from .core import Checker, guarded, same_tensor, shape_mismatch

__all__ = ["check_crop_and_concat"]

CropConcat = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
"""``fn(encoder_map, decoder_map)``."""

Case = tuple[int, int, int, tuple[int, int], tuple[int, int], torch.dtype]

# (B, C1, C2, (H1, W1), (H2, W2), dtype); even margins first, then odd ones (1, 3, 7, 5), so
# that a shifted crop is caught on an even margin and the odd-margin convention is checked
# after; one case in float64, so that a cast (.float(), .long()) shows.
_CROP_CASES: tuple[Case, ...] = (
    (2, 3, 3, (64, 64), (56, 56), torch.float32),
    (1, 2, 4, (17, 17), (9, 9), torch.float32),
    (1, 1, 2, (136, 136), (104, 104), torch.float32),
    (1, 2, 3, (12, 16), (11, 13), torch.float64),
    (1, 2, 1, (13, 10), (6, 5), torch.float32),
)
_HIDDEN_CASES: tuple[Case, ...] = (
    (2, 4, 2, (30, 26), (18, 20), torch.float32),
    (1, 3, 5, (9, 14), (4, 9), torch.float64),
    (3, 1, 1, (7, 7), (7, 7), torch.float32),
)


def _crop_label(case: Case) -> str:
    b, c1, c2, (h1, w1), (h2, w2), dtype = case
    kind = str(dtype).replace("torch.", "")
    return f"encoder ({b}, {c1}, {h1}, {w1}), decoder ({b}, {c2}, {h2}, {w2}), {kind}"


def _crop_crash_hint(error: BaseException) -> str:
    kind = shape_mismatch(error)
    if kind is not None and kind[0] == "cat" and kind[1] in (1, -3):
        return ("the two maps must have the same H x W before torch.cat: crop the encoder "
                "map (first argument, the larger) to the decoder map's H2 x W2")
    if kind is not None and kind[0] == "cat":
        return "join the maps on the channel axis: torch.cat([cropped, decoder_map], dim=1)"
    return "the function crashed: call it on two maps of these shapes and read the traceback"


def _offset_pattern(rows: list[tuple[int, int]], cols: list[tuple[int, int]]) -> str:
    """Name the crop placement from the (margin, offset) pairs seen so far, per axis."""
    both = rows + cols

    def every(rule: Callable[[int], int], pairs: list[tuple[int, int]] = both) -> bool:
        return all(offset == rule(margin) for margin, offset in pairs)

    if every(lambda m: 0):
        return "the top-left corner was kept: take the centre, top = (H1 - H2) // 2"
    if every(lambda m: m):
        return "the bottom-right corner was kept: take the centre, top = (H1 - H2) // 2"
    if every(lambda m: (m + 1) // 2):
        return ("for an odd margin the book drops the extra row/column at the bottom/right: "
                "top = (H1 - H2) // 2, not (H1 - H2 + 1) // 2")
    if every(lambda m: int(round(m / 2))):
        return ("torchvision's center_crop rounds half to even, so for a margin of 3 it puts "
                "the extra row/column at the top/left; the book drops it at the bottom/right: "
                "slice with top = (H1 - H2) // 2, left = (W1 - W2) // 2")

    def shift(pairs: list[tuple[int, int]]) -> int | None:
        for s in (0, 1, -1):
            if every(lambda m, s=s: m // 2 + s, pairs):
                return s
        return None

    row, col = shift(rows), shift(cols)
    if row is not None and col is not None:
        moved = [f"one row {'down' if row > 0 else 'up'}" if row else "",
                 f"one column {'right' if col > 0 else 'left'}" if col else ""]
        return (f"off by one: the window is {' and '.join(m for m in moved if m)} of the "
                "centre; use top = (H1 - H2) // 2, left = (W1 - W2) // 2 exactly")
    return "take the centre window: top = (H1 - H2) // 2, left = (W1 - W2) // 2"


@guarded("crop and concatenate")
def check_crop_and_concat(fn: CropConcat, *, hidden: bool = False) -> str:
    """Check the valid U-Net's skip: ``fn(encoder_map, decoder_map)`` returns the encoder map
    centre-cropped to the decoder map's size, concatenated with it on the channel axis.

    Shapes: encoder_map (B, C1, H1, W1), decoder_map (B, C2, H2, W2) with H1 >= H2 and
    W1 >= W2 -> (B, C1 + C2, H2, W2). Either order of the two parts is accepted (the report
    says which). The crop window must be centred: top = (H1 - H2) // 2, left = (W1 - W2) // 2
    (the reference, ``skiplab.models.unet.center_crop``, drops the extra row or column of an
    odd margin at the bottom/right); for an odd margin the window one pixel further
    down/right is accepted too (torchvision's ``center_crop`` does that for some margins).
    A valid U-Net's margins are always even. Tried on 64->56, 17->9, 136->104 (even margins)
    and 12x16->11x13, 13x10->6x5 (odd margins 1, 3, 7, 5), one of them in float64, with
    distinct values in every entry (an arange) so that a window shifted by one pixel shows;
    ``hidden=True`` adds three more cases (a zero margin among them).

    Properties, case by case: runs; inputs left unchanged; output dtype (the maps' dtype,
    compared explicitly: torch.equal alone would accept a cast); output shape; decoder map kept
    whole; encoder map cropped, not resized (its part is a contiguous window of it);
    centre crop (diagnosed as top-left, bottom-right, off by one, rounded up, or torchvision's
    round-half-to-even placement).

    Returns the report; raises :class:`CheckFailed` naming the first property that fails.
    """
    check = Checker("crop and concatenate")
    rows: list[tuple[int, int]] = []   # (margin, offset) per case, along H
    cols: list[tuple[int, int]] = []   # along W
    orders: list[str] = []
    for case in _CROP_CASES + (_HIDDEN_CASES if hidden else ()):
        b, c1, c2, (h1, w1), (h2, w2), dtype = case
        label = _crop_label(case)
        enc = torch.arange(b * c1 * h1 * w1, dtype=dtype).reshape(b, c1, h1, w1)
        dec = -1.0 - torch.arange(b * c2 * h2 * w2, dtype=dtype).reshape(b, c2, h2, w2)
        enc_in, dec_in = enc.clone(), dec.clone()
        expected = f"fn({label}) returns a tensor"
        out = check.run("runs", lambda: fn(enc_in, dec_in), expected, _crop_crash_hint)
        out = check.tensor("runs", out, expected, like=dec)
        if not (same_tensor(enc_in, enc) and same_tensor(dec_in, dec)):
            check.fail("inputs left unchanged", "both maps are the same after the call",
                       "an input was modified in place", "crop with slicing; do not write into "
                       "the input maps")

        want = (b, c1 + c2, h2, w2)
        got = tuple(out.shape)
        if got != want:
            if len(got) != 4:
                hint = "keep the (B, C, H, W) layout"
            elif got[0] == 2 * b:
                hint = "concatenated on the batch axis (dim 0): use dim=1, the channels"
            elif got[2] == 2 * h2 or got[3] == 2 * w2:
                hint = "concatenated on a spatial axis: use dim=1, the channels"
            elif got[2:] == (h1, w1):
                hint = ("the output has the encoder map's size: crop the encoder map down to "
                        "the decoder's H2 x W2; do not pad or crop the decoder map")
            elif got[2] < h2 or got[3] < w2:
                hint = ("the output is smaller than the decoder map: keep the decoder map "
                        "whole, crop only the encoder map to its size")
            elif got[1] in (c1, c2):
                hint = "only one map is returned: concatenate both, torch.cat(..., dim=1)"
            else:
                hint = "crop the encoder map to H2 x W2, then torch.cat on dim=1"
            check.fail("output shape", f"{label}: {want}", f"{got}", hint)

        if same_tensor(out[:, c1:], dec):
            orders.append("encoder first")
            part = out[:, :c1]
        elif same_tensor(out[:, :c2], dec):
            orders.append("decoder first")
            part = out[:, c2:]
        else:
            check.fail("decoder map kept whole",
                       f"{label}: the decoder map, unchanged, as the first or last {c2} channels",
                       "no such block of channels", "crop only the encoder map; pass the "
                       "decoder map to torch.cat as it is")

        corner = part[0, 0, 0, 0].item()
        top, left = int(corner) // w1, int(corner) % w1
        window = (corner == int(corner) and 0 <= corner < h1 * w1
                  and top + h2 <= h1 and left + w2 <= w1
                  and same_tensor(part, enc[..., top:top + h2, left:left + w2]))
        if not window:
            values = part.flatten()
            copied = bool(torch.all((values == values.round()) & (values >= 0)
                                    & (values < enc.numel())))
            hint = ("its values are encoder entries, but not one contiguous window: slice "
                    "x[..., top:top + H2, left:left + W2] (no striding or nearest resizing)"
                    if copied else
                    "its values are not copied from the encoder map: crop by slicing; "
                    "interpolation or pooling resizes the map and mixes pixels")
            check.fail("encoder map cropped, not resized",
                       f"{label}: an H2 x W2 window of the encoder map",
                       "the encoder part is not a window of it", hint)

        want_at = ((h1 - h2) // 2, (w1 - w2) // 2)
        rows.append((h1 - h2, top))
        cols.append((w1 - w2, left))

        def centred(margin: int, offset: int) -> bool:
            # an odd margin has two centres: the extra pixel may go either side
            return offset == margin // 2 or (margin % 2 == 1 and offset == (margin + 1) // 2)

        if not (centred(h1 - h2, top) and centred(w1 - w2, left)):
            check.fail("centre crop", f"{label}: window at (top, left) = {want_at}",
                       f"window at {(top, left)}", _offset_pattern(rows, cols))

    if len(set(orders)) > 1:
        check.fail("same order every call", "the parts in the same order for every input",
                   f"orders: {orders}", "always torch.cat([cropped, decoder_map], dim=1)")
    for prop in ("runs", "inputs left unchanged", "output dtype", "output shape",
                 "decoder map kept whole",
                 "encoder map cropped, not resized", "centre crop"):
        check.ok(prop)
    order = ("encoder map (cropped) first, then decoder map" if orders[0] == "encoder first"
             else "decoder map first, then encoder map (cropped); the book puts the encoder "
                  "map first, either is accepted")
    return check.report() + f"\n  order: {order}"
