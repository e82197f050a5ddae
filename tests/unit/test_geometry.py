"""Letterbox/resize placement and its exact inverse, on odd image sizes."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from yolo_client.geometry import LETTERBOX_FILL, ResizeParams, letterbox, resize_params

SIZES = [(1, 1), (1, 4000), (4000, 1), (3000, 17), (17, 3000), (640, 480), (480, 640), (416, 416)]


@pytest.mark.parametrize("letterboxed", [True, False])
@pytest.mark.parametrize(("width", "height"), SIZES)
def test_inverse_maps_boxes_back_within_half_a_pixel(width: int, height: int, letterboxed: bool) -> None:
    params = resize_params(width, height, 416, 320, letterboxed)
    rng = np.random.default_rng(width * 7 + height)
    corners = rng.uniform(0, 1, (50, 4)) * [width, height, width, height]
    boxes = np.concatenate([np.minimum(corners[:, :2], corners[:, 2:]), np.maximum(corners[:, :2], corners[:, 2:])], 1)
    back = params.to_original(params.to_network(boxes))
    assert np.abs(back - boxes).max() <= 0.5


@pytest.mark.parametrize(("width", "height"), SIZES)
def test_letterbox_keeps_aspect_and_centres(width: int, height: int) -> None:
    params = resize_params(width, height, 416, 320, letterbox=True)
    assert params.new_width == 416 or params.new_height == 320
    assert 1 <= params.new_width <= 416 and 1 <= params.new_height <= 320
    if params.new_width == 416:  # fitted the width: the height follows the aspect ratio, rounded down
        assert params.new_height == max(1, height * 416 // width)
    else:
        assert params.new_width == max(1, width * 320 // height)
    assert params.pad_x == (416 - params.new_width) // 2 and params.pad_y == (320 - params.new_height) // 2


def test_drawn_rectangle_comes_back_to_its_pixels() -> None:
    image = np.zeros((480, 640, 3), dtype=np.uint8)
    box = (100, 60, 300, 200)  # x1, y1, x2, y2 (exclusive)
    cv2.rectangle(image, box[:2], (box[2] - 1, box[3] - 1), (255, 255, 255), thickness=-1)
    tensor, params = letterbox(image, 416, 416, letterbox=True)
    ys, xs = np.nonzero(tensor[0] > 0.75)  # bright pixels in the network input
    found = np.array([[xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]], dtype=np.float32)
    back = params.to_original(found)[0]
    assert np.abs(back - np.array(box)).max() <= 1.0 / params.scale_x  # one network pixel, in original pixels
    assert np.all(tensor[:, : params.pad_y] == np.float32(LETTERBOX_FILL))


def test_clipping_and_pack_round_trip() -> None:
    params = resize_params(640, 480, 416, 416, letterbox=True)
    assert params.to_original(np.array([[-50.0, -50.0, 1000.0, 1000.0]])).tolist() == [[0.0, 0.0, 640.0, 480.0]]
    assert ResizeParams.unpack(params.pack(), 416, 416) == params


def test_plain_resize_stretches() -> None:
    tensor, params = letterbox(np.full((10, 30, 3), 255, np.uint8), 64, 32, letterbox=False)
    assert (params.new_width, params.new_height, params.pad_x, params.pad_y) == (64, 32, 0, 0)
    assert tensor.shape == (3, 32, 64) and np.allclose(tensor, 1.0)


def test_rejects_empty_and_wrong_images() -> None:
    with pytest.raises(ValueError, match="no pixels"):
        resize_params(0, 10, 416, 416, True)
    with pytest.raises(ValueError, match="uint8"):
        letterbox(np.zeros((4, 4, 3), np.float32), 32, 32, True)
