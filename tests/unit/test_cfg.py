"""The cfg parser: every option understood, ignored on purpose, or rejected with its line."""

from __future__ import annotations

import pytest

from tests.helpers.darknet_files import cfg_path
from yolo_server.darknet import CfgError, load_spec, parse_cfg
from yolo_server.darknet.cfg import ConvSpec, MaxPoolSpec, RouteSpec

NET = "[net]\nwidth=64\nheight=64\nchannels=3\n"
HEAD = "[convolutional]\nfilters=18\nsize=1\nactivation=linear\n[yolo]\nmask=0,1,2\nanchors=1,2,3,4,5,6\nclasses=1\nnum=3\n"


@pytest.mark.parametrize("name", ["yolov4", "yolov4-tiny", "yolov4-csp", "yolov4x-mish"])
def test_official_cfgs_parse(name: str) -> None:
    spec = load_spec(cfg_path(name))
    assert spec.num_classes == 80
    assert len(spec.yolo_layers) == (2 if name == "yolov4-tiny" else 3)


def test_yolov4_tiny_details() -> None:
    spec = load_spec(cfg_path("yolov4-tiny"))
    assert [head.anchors for head in spec.yolo_layers][1] == ((23.0, 27.0), (37.0, 58.0), (81.0, 82.0))
    assert {head.scale_x_y for head in spec.yolo_layers} == {1.05}
    route = next(layer for layer in spec.layers if isinstance(layer, RouteSpec) and layer.groups == 2)
    assert route.group_id == 1
    pool = next(layer for layer in spec.layers if isinstance(layer, MaxPoolSpec))
    assert (pool.size, pool.stride, pool.padding) == (2, 2, 1)


def test_csp_flags() -> None:
    spec = load_spec(cfg_path("yolov4-csp"))
    assert spec.net.letter_box and all(head.new_coords for head in spec.yolo_layers)
    assert [head.scale_x_y for head in spec.yolo_layers] == [2.0, 2.0, 2.0]


def test_custom_class_count_and_input_override() -> None:
    spec = parse_cfg(NET + HEAD).with_input_size(96, 32)
    assert spec.num_classes == 1 and (spec.net.width, spec.net.height) == (96, 32)
    conv = spec.layers[0]
    assert isinstance(conv, ConvSpec) and conv.padding == 0


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (NET + "[dropout]\nprobability=.5\n" + HEAD, r"line 5: unsupported section \[dropout\]"),
        (NET + "[convolutional]\nfilters=8\nxnor=1\n" + HEAD, r"line 7: \[convolutional\] xnor='1' is not supported"),
        (NET + "[convolutional]\nfilters=8\nbogus=3\n" + HEAD, r"line 7: \[convolutional\] bogus: unsupported option"),
        (NET + "[convolutional]\nfilters=8\nactivation=gelu\n" + HEAD, r"line 7: \[convolutional\] activation='gelu'"),
        (NET + "[convolutional]\nfilters=8\nsize=x\n" + HEAD, r"line 7: \[convolutional\] size='x'"),
        (NET + "[route]\nlayers=-3\n" + HEAD, r"line 5: \[route\]: layer reference -3"),
        (NET + HEAD.replace("anchors=1,2,3,4,5,6", "anchors=1,2,3"), r"anchors has 3 numbers, num=3 needs 6"),
        (NET.replace("width=64", "width=65") + HEAD, r"input size 65x64 must be positive multiples of 32"),
        ("[convolutional]\nfilters=8\n", r"starts with a \[net\] section"),
        (NET + "width=32\n" + HEAD, r"option 'width' repeated"),
    ],
)
def test_errors_name_the_problem_and_line(text: str, message: str) -> None:
    with pytest.raises(CfgError, match=message):
        parse_cfg(text)


def test_training_only_options_are_accepted() -> None:
    spec = parse_cfg(NET + "batch=64\nmosaic=1\n" + HEAD.replace("num=3", "num=3\njitter=.3\nignore_thresh=.7"))
    assert spec.num_classes == 1
