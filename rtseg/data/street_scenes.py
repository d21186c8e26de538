"""Procedural street scenes: the renderer behind :class:`rtseg.data.synthetic.Synthetic`.


Each sample is rendered from its own random stream, seeded by ``(seed, split, index)``, so it
is identical on every machine and in every worker, and the train/val/test splits never share
a scene. Any image size works; a 256×512 scene takes a few milliseconds (vectorised numpy).

The scenes are built so that colour alone does not give the class:

* road, sidewalk, building facades, poles and overcast skies draw their colours from one
  grey/beige pool; what separates them is layout (road between converging edges, sidewalks
  outside it, facades above the ground line, poles thin and vertical) and texture (lane
  dashes, paving joints, window grids);
* signs and cars share one paint pool (red, blue, yellow, white, green); signs are small
  shapes on top of poles, cars are large boxes with windows and wheels on the road;
* tree trunks are grey-brown like some facades, and green cars/signs resemble foliage;
* illumination gradients, cast shadows, colour casts and pixel noise blur every colour
  distribution further.

Thin structures (poles 1–3 px wide, lamp arms, curbs), small objects (signs, distant cars)
and large regions (road, sky, facades) appear in every split.
"""

from __future__ import annotations

import numpy as np

SYNTHETIC_CLASSES = ["road", "sidewalk", "building", "vegetation", "sky", "pole", "sign", "car"]
# The Cityscapes colours of the same classes.
SYNTHETIC_PALETTE = [
    (128, 64, 128), (244, 35, 232), (70, 70, 70), (107, 142, 35), (70, 130, 180),
    (153, 153, 153), (220, 220, 0), (0, 0, 142),
]  # fmt: skip
ROAD, SIDEWALK, BUILDING, VEGETATION, SKY, POLE, SIGN, CAR = range(8)

SPLITS = {"train": 0, "val": 1, "test": 2}

# Paint shared by cars and signs (RGB, before lighting).
_PAINT = np.array(
    [
        [190, 30, 35], [30, 70, 170], [225, 190, 40], [225, 225, 220], [40, 120, 60],
        [25, 25, 30], [140, 140, 145],
    ],
    dtype=np.float32,
)
_SIGN_PAINT = 5  # signs use the first five paints (no black, no silver)


def _grey(rng: np.random.Generator, low: float, high: float) -> np.ndarray:
    """A tinted grey/beige from the pool shared by road, sidewalk, facades and poles."""
    level = rng.uniform(low, high)
    warm = rng.uniform(-12, 12) * np.array([1.0, 0.4, -0.8])
    return (level + warm + rng.normal(0, 4, 3)).astype(np.float32)


def _smooth_field(rng: np.random.Generator, h: int, w: int, cells: int) -> np.ndarray:
    """h×w field of N(0, 1) values on a coarse grid, bilinearly interpolated (low frequency)."""
    gh, gw = cells + 1, 2 * cells + 1
    grid = rng.standard_normal((gh, gw)).astype(np.float32)
    py = np.linspace(0, gh - 1, h, dtype=np.float32)
    px = np.linspace(0, gw - 1, w, dtype=np.float32)
    y0 = np.minimum(py.astype(np.int64), gh - 2)
    x0 = np.minimum(px.astype(np.int64), gw - 2)
    fy = (py - y0)[:, None]
    rows = grid[y0] * (1 - fy) + grid[y0 + 1] * fy
    fx = px - x0
    return rows[:, x0] * (1 - fx) + rows[:, x0 + 1] * fx


def _paint(
    image: np.ndarray, label: np.ndarray, mask: np.ndarray, color: np.ndarray, cls: int
) -> None:
    image[mask] = color
    label[mask] = cls


class _Scene:
    """One street scene; ``render()`` gives (image float32 H×W×3 in 0..255, label uint8 H×W)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int) -> None:
        self.rng = rng
        self.h, self.w = height, width
        self.ys = np.arange(height, dtype=np.float32)[:, None]
        self.xs = np.arange(width, dtype=np.float32)[None, :]
        self.image = np.zeros((height, width, 3), np.float32)
        self.label = np.zeros((height, width), np.uint8)
        # Perspective: horizon row, vanishing column, ground depth below the horizon.
        self.hz = height * rng.uniform(0.36, 0.52)
        self.vx = width * rng.uniform(0.3, 0.7)
        self.depth = max(height - self.hz, 1.0)
        span = width / self.depth
        self.road_w0 = width * rng.uniform(0.005, 0.02)
        self.road_slope = rng.uniform(0.25, 0.6, 2) * span  # left, right: x per row
        self.wall_slope = rng.uniform(0.9, 2.2, 2) * span  # building line, x per row

    def side_slope(self, slopes: np.ndarray, dx: np.ndarray) -> np.ndarray:
        return np.where(dx < 0, slopes[0], slopes[1])

    def road_edge(self, y: float, side: int) -> float:
        """Column of the left (side 0) or right (side 1) road edge at row ``y``."""
        half = self.road_w0 + max(y - self.hz, 0.0) * self.road_slope[side]
        return self.vx - half if side == 0 else self.vx + half

    def wall_edge(self, y: float, side: int) -> float:
        half = self.road_w0 + max(y - self.hz, 0.0) * self.wall_slope[side]
        return self.vx - half if side == 0 else self.vx + half

    def render(self) -> tuple[np.ndarray, np.ndarray]:
        self.sky()
        self.buildings_and_ground()
        objects = [(self.rng.uniform(0.05, 1.1), kind) for kind in self._object_kinds()]
        for near, kind in sorted(objects):  # far objects first, near ones occlude them
            getattr(self, kind)(near)
        self.light()
        return self.image, self.label

    def _object_kinds(self) -> list[str]:
        rng = self.rng
        return (
            ["tree"] * int(rng.integers(1, 5))
            + ["pole"] * int(rng.integers(2, 7))
            + ["car"] * int(rng.integers(1, 6))
        )

    # -- large regions ----------------------------------------------------------------------

    def sky(self) -> None:
        rng = self.rng
        if rng.random() < 0.4:  # overcast: same grey pool as facades
            top = _grey(rng, 150, 225)
            bottom = top * rng.uniform(0.9, 1.1)
        else:
            top = np.array([rng.uniform(40, 110), rng.uniform(90, 150), rng.uniform(170, 235)])
            bottom = top + np.array([70, 55, 15]) * rng.uniform(0.3, 1.0)
        t = np.clip(self.ys / max(self.hz, 1.0), 0, 1)[..., None]
        self.image[:] = (top + (bottom - top) * t).astype(np.float32)
        self.label[:] = SKY

    def buildings_and_ground(self) -> None:
        rng, ys, xs, h, w = self.rng, self.ys, self.xs, self.h, self.w
        image, label = self.image, self.label
        dx = xs - np.float32(self.vx)
        below = np.maximum(ys - np.float32(self.hz), 0)
        # The ground starts where the building line of that side crosses the column.
        wall_slope = self.side_slope(self.wall_slope, dx).astype(np.float32)
        ground_row = self.hz + np.maximum(np.abs(dx) - self.road_w0, 0) / wall_slope
        ground = ys >= ground_row

        # Facade blocks: per-column parameters, repeated over each block's width.
        widths = []
        while sum(widths) < w:
            widths.append(max(2, int(w * rng.uniform(0.06, 0.22))))
        n = len(widths)
        starts = np.cumsum([0] + widths[:-1])
        centres = starts + np.array(widths) / 2
        near = np.clip(np.abs(centres - self.vx) / (0.5 * w), 0.2, 1.0)
        tops = self.hz - self.hz * rng.uniform(0.25, 1.0, n) * near
        colors = np.stack([_grey(rng, 60, 200) for _ in range(n)])
        brick = rng.random(n) < 0.25
        colors[brick] = colors[brick] * np.array([1.15, 0.75, 0.6], np.float32)
        period_x = np.maximum(3, w * rng.uniform(0.02, 0.05, n) * near).astype(np.int32)
        period_y = np.maximum(3, h * rng.uniform(0.04, 0.09, n) * near).astype(np.int32)
        win_x = np.maximum(1, period_x * rng.uniform(0.35, 0.65, n)).astype(np.int32)
        win_y = np.maximum(1, period_y * rng.uniform(0.35, 0.65, n)).astype(np.int32)
        window_tint = np.where(
            (rng.random(n) < 0.7)[:, None],
            colors * rng.uniform(0.3, 0.6, (n, 1)),  # dark glass
            np.minimum(colors * rng.uniform(1.2, 1.5, (n, 1)), 255),  # lit / reflecting
        ).astype(np.float32)

        def per_column(values: np.ndarray) -> np.ndarray:
            return np.repeat(values, widths, axis=0)[:w]

        top_c = np.ceil(per_column(tops)).astype(np.int32)[None, :]
        rows = np.arange(h, dtype=np.int32)[:, None]
        facade = (rows >= top_c) & ~ground
        image[facade] = np.broadcast_to(per_column(colors)[None], (h, w, 3))[facade]
        label[facade] = BUILDING
        rel_x = np.arange(w, dtype=np.int32) - per_column(starts).astype(np.int32)
        window_cols = (rel_x % per_column(period_x) < per_column(win_x)) & (rel_x >= 1)
        rel_y = rows - top_c
        windows = (
            facade
            & window_cols[None, :]
            & (rel_y >= 2)
            & (rel_y % per_column(period_y)[None, :] < per_column(win_y)[None, :])
            & (ys < ground_row - 1)
        )
        image[windows] = np.broadcast_to(per_column(window_tint)[None], (h, w, 3))[windows]

        # Ground: road between the converging edges, sidewalk (with curb) outside.
        road_half = self.road_w0 + below * self.side_slope(self.road_slope, dx).astype(np.float32)
        road = ground & (np.abs(dx) <= road_half)
        sidewalk = ground & ~road
        road_color = _grey(rng, 45, 150)
        walk_color = _grey(rng, 80, 195)
        depth = np.float32(self.depth) / (below + 1)  # ~1 at the bottom row, large at the horizon
        angle = dx / (below + 1)
        tile = np.float32(rng.uniform(3, 7))
        joints = ((depth * tile) % 1 < 0.12) | ((angle * np.float32(rng.uniform(1.5, 4))) % 1 < 0.1)
        image[sidewalk] = walk_color
        image[sidewalk & joints] = walk_color * rng.uniform(0.7, 0.85)
        label[sidewalk] = SIDEWALK
        curb_w = 1 + below * np.float32(0.012 * h / 256)
        curb = sidewalk & (np.abs(dx) <= road_half + curb_w)
        image[curb] = np.minimum(walk_color * 1.3, 255)
        patches = 1 + 0.08 * _smooth_field(rng, h, w, 4)
        image[road] = road_color * patches[road][:, None]
        label[road] = ROAD
        # Dashed centre line, in the paint colours shared with cars and signs.
        centre = self.vx + below * np.float32((self.road_slope[1] - self.road_slope[0]) / 2)
        dashes = (
            road
            & (np.abs(xs - centre) <= np.maximum(0.6, below * 0.012))
            & ((depth * np.float32(rng.uniform(1.5, 3.0))) % 1 < 0.5)
        )
        image[dashes] = _PAINT[rng.choice([2, 3])]

        if rng.random() < 0.6:  # a hedge along one building line
            side = int(rng.integers(0, 2))
            band = sidewalk & (ys < ground_row + 1 + 0.15 * below) & ((dx < 0) == (side == 0))
            count = int(band.sum())
            texture = rng.uniform(0.6, 1.3, (count, 1)).astype(np.float32)
            image[band] = self._foliage_color() * texture
            label[band] = VEGETATION

    # -- objects (``near`` in (0, 1.1]: 0 at the horizon, 1 at the bottom row) ----------

    def _foot(self, near: float, inset: tuple[float, float]) -> tuple[float, float, float]:
        """(row, column, scale) of a point on a sidewalk, ``inset`` of the way to the wall."""
        y = self.hz + near * self.depth
        side = int(self.rng.integers(0, 2))
        road_x, wall_x = self.road_edge(y, side), self.wall_edge(y, side)
        x = road_x + (wall_x - road_x) * self.rng.uniform(*inset)
        return y, x, self._scale(near)

    def _scale(self, near: float) -> float:
        """Perspective size factor of an object standing ``near`` of the way down (~1 at the
        bottom row of a typical scene), independent of the image size."""
        return near * self.depth / (0.5 * self.h)

    def _foliage_color(self) -> np.ndarray:
        rng = self.rng
        return np.array(
            [rng.uniform(30, 100), rng.uniform(80, 150), rng.uniform(20, 70)], np.float32
        )

    def _box(self, y0: float, y1: float, x0: float, x1: float) -> tuple[slice, slice] | None:
        """Clipped integer slices of a box, None when it is empty or outside the image."""
        r0, r1 = max(int(round(y0)), 0), min(int(round(y1)), self.h)
        c0, c1 = max(int(round(x0)), 0), min(int(round(x1)), self.w)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def _fill(self, box: tuple[slice, slice] | None, color: np.ndarray, cls: int) -> None:
        if box is not None:
            self.image[box] = color
            self.label[box] = cls

    def pole(self, near: float) -> None:
        rng = self.rng
        y, x, scale = self._foot(near, (0.05, 0.4))
        width = int(rng.integers(1, 4))  # thin at every image size
        height = self.h * scale * rng.uniform(0.35, 0.6) + 4
        color = _grey(rng, 50, 190)
        top = y - height
        self._fill(self._box(top, y, x, x + width), color, POLE)
        if rng.random() < 0.3:  # street lamp: a horizontal arm over the road, 1-2 px thick
            reach = self.w * scale * rng.uniform(0.05, 0.12) + 2
            toward_road = 1 if x < self.vx else -1
            x_end = x + toward_road * reach
            arm = self._box(top, top + int(rng.integers(1, 3)), min(x, x_end), max(x, x_end))
            self._fill(arm, color, POLE)
        if rng.random() < 0.65:
            self.sign(top, x + width / 2, scale)

    def sign(self, top: float, cx: float, scale: float) -> None:
        rng = self.rng
        size = max(3.0, self.h * scale * rng.uniform(0.04, 0.08))
        cy = top + size / 2
        box = self._box(cy - size / 2, cy + size / 2, cx - size / 2, cx + size / 2)
        if box is None:
            return
        yy = self.ys[box[0]] - cy
        xx = self.xs[:, box[1]] - cx
        shape = rng.integers(0, 3)
        r = size / 2
        if shape == 0:  # disc
            mask = yy**2 + xx**2 <= r**2
        elif shape == 1:  # diamond
            mask = np.abs(yy) + np.abs(xx) <= r
        else:  # rectangle
            mask = np.ones((yy.shape[0], xx.shape[1]), bool)
        color = _PAINT[rng.integers(0, _SIGN_PAINT)] * rng.uniform(0.85, 1.1)
        _paint(self.image[box], self.label[box], mask, np.minimum(color, 255), SIGN)

    def tree(self, near: float) -> None:
        rng = self.rng
        y, x, scale = self._foot(near, (0.1, 0.6))
        trunk_w = max(1.0, self.w * scale * rng.uniform(0.006, 0.015))
        trunk_h = self.h * scale * rng.uniform(0.3, 0.5) + 3
        # Grey-brown bark, close to the facade pool.
        bark = _grey(rng, 50, 130) * np.array([1.1, 0.95, 0.8], np.float32)
        self._fill(self._box(y - trunk_h, y, x - trunk_w / 2, x + trunk_w / 2), bark, VEGETATION)
        rx = self.w * scale * rng.uniform(0.05, 0.11) + 2
        ry = rx * rng.uniform(0.8, 1.3)
        cy = y - trunk_h - ry * 0.6
        box = self._box(cy - 1.3 * ry, cy + 1.3 * ry, x - 1.3 * rx, x + 1.3 * rx)
        if box is None:
            return
        yy = (self.ys[box[0]] - cy) / ry
        xx = (self.xs[:, box[1]] - x) / rx
        theta = np.arctan2(yy, xx)
        lobes = 1 + 0.18 * np.sin(rng.integers(3, 8) * theta + rng.uniform(0, 6.3))
        mask = yy**2 + xx**2 <= lobes**2
        texture = rng.uniform(0.55, 1.35, mask.shape + (1,)).astype(np.float32)
        leaves = np.minimum(self._foliage_color() * texture, 255)
        self.image[box][mask] = leaves[mask]
        self.label[box][mask] = VEGETATION

    def car(self, near: float) -> None:
        rng = self.rng
        y = self.hz + near * self.depth
        scale = self._scale(near)
        width = self.w * scale * rng.uniform(0.22, 0.32) + 3
        left, right = self.road_edge(y, 0), self.road_edge(y, 1)
        x = rng.uniform(left + width * 0.3, max(right - width * 0.3, left + width * 0.3 + 1))
        x0, x1 = x - width / 2, x + width / 2
        body_h = width * rng.uniform(0.28, 0.36)
        cabin_h = width * rng.uniform(0.2, 0.26)
        wheel = max(1.0, width * 0.1)
        paint = np.minimum(_PAINT[rng.integers(0, len(_PAINT))] * rng.uniform(0.8, 1.15), 255)
        glass = np.array([35, 40, 50], np.float32) * rng.uniform(0.7, 1.4)
        # A dark contact shadow on the road (still road), then the car over it.
        shadow = self._box(y - wheel, y + max(1.0, wheel * 0.6), x0 - 1, x1 + 1)
        if shadow is not None:
            self.image[shadow] *= 0.45
        body_top = y - wheel * 0.6 - body_h
        self._fill(self._box(body_top, y - wheel * 0.6, x0, x1), paint, CAR)
        inset = width * rng.uniform(0.12, 0.2)
        cabin = self._box(body_top - cabin_h, body_top + 1, x0 + inset, x1 - inset)
        self._fill(cabin, paint * 0.9, CAR)
        self._fill(
            self._box(body_top - cabin_h * 0.8, body_top, x0 + inset + 1, x1 - inset - 1),
            glass,
            CAR,
        )
        tyre = np.array([22, 22, 24], np.float32)
        for wx in (x0 + width * 0.08, x1 - width * 0.08 - 2 * wheel):
            self._fill(self._box(y - 2 * wheel, y, wx, wx + 2 * wheel), tyre, CAR)
        lamp = _PAINT[rng.choice([0, 2])]
        lamp_w = max(1.0, width * 0.08)
        for lx in (x0, x1 - lamp_w):
            self._fill(self._box(body_top + 1, body_top + 1 + lamp_w, lx, lx + lamp_w), lamp, CAR)

    # -- lighting and noise --------------------------------------------------------------

    def light(self) -> None:
        rng, ys, xs, h, w = self.rng, self.ys, self.xs, self.h, self.w

        def uniform(low: float, high: float) -> np.float32:
            return np.float32(rng.uniform(low, high))

        gain = uniform(0.6, 1.3) * (
            1
            + uniform(-0.35, 0.35) * (xs / w - 0.5)
            + uniform(-0.35, 0.35) * (ys / h - 0.5)
            + 0.08 * _smooth_field(rng, h, w, 3)
        )
        if rng.random() < 0.6:  # a cast shadow over everything but the sky
            angle = rng.uniform(0, np.pi)
            offset = (xs - uniform(0.2, 0.8) * w) * np.float32(np.cos(angle)) + (
                ys - uniform(0.4, 0.9) * h
            ) * np.float32(np.sin(angle))
            gain[(offset > 0) & (self.label != SKY)] *= uniform(0.45, 0.7)
        cast = rng.uniform(0.88, 1.12, 3).astype(np.float32)
        self.image *= gain[..., None]
        self.image *= cast
        self.image += rng.standard_normal((h, w, 3), dtype=np.float32) * uniform(3, 12)


def render_scene(seed: int, split: str, index: int, size: tuple[int, int]) -> tuple[
    np.ndarray, np.ndarray
]:
    """Render scene ``index`` of ``split`` for ``seed``.

    Returns:
        (image uint8 H×W×3, label uint8 H×W with values in [0, 8)).
    """
    height, width = size
    rng = np.random.default_rng([seed, SPLITS[split], index])
    image, label = _Scene(rng, height, width).render()
    return np.clip(image, 0, 255).astype(np.uint8), label
