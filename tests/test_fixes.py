"""Every validation error the server can fix with one change carries that change as `fix`; the
page applies it as it comes (static/js no longer does the arithmetic). Each test applies the fix
to the spec exactly as the contract says and checks again: the error is gone, and where one
change is enough, the whole stack is valid."""

from __future__ import annotations

import copy
import json

import pytest

from tests.conftest import client_for

pytestmark = pytest.mark.anyio
API = "/api/v1"


def net(*layers: dict, h: int = 7, w: int = 7, c: int = 1) -> dict:
    return {"input": {"height": h, "width": w, "channels": c}, "layers": list(layers)}


def conv(**fields: object) -> dict:
    return {"type": "conv", "filters": 2, "kernel_size": 3, **fields}


def apply_fix(spec: dict, error: dict) -> dict:
    """spec with error["fix"] applied, read as API.md says (a copy; spec is left as it is)."""
    fix, index = error["fix"], error["layer"]
    given = [k for k in ("set", "insert_before", "drop") if fix[k] is not None]
    assert len(given) == 1, fix
    fixed = copy.deepcopy(spec)
    target = fixed["input"] if index is None else fixed["layers"][index]
    if fix["set"] is not None:
        target.update(fix["set"])
    elif fix["insert_before"] is not None:
        fixed["layers"].insert(index, dict(fix["insert_before"]))
    else:
        for key in fix["drop"]:
            target.pop(key, None)
    return fixed


async def shapes(client, spec: dict) -> dict:
    r = await client.post(f"{API}/shapes", json=spec)
    assert r.status_code == 200, r.text
    return r.json()


async def only_error(client, spec: dict) -> dict:
    body = await shapes(client, spec)
    assert not body["valid"] and len(body["errors"]) == 1, body["errors"]
    return body["errors"][0]


async def assert_fixed(client, spec: dict, error: dict) -> dict:
    """Apply the fix: the stack is then valid. The fixed spec."""
    fixed = apply_fix(spec, error)
    body = await shapes(client, fixed)
    assert body["valid"], (fixed, body["errors"])
    return fixed


def set_fix(label: str, **values: object) -> dict:
    return {"label": label, "set": values, "insert_before": None, "drop": None}


# -- the arithmetic ----------------------------------------------------------------------------
async def test_stride_5_on_7x7_is_fixed_with_the_largest_stride_that_fits(client):
    spec = net(conv(stride=5))
    error = await only_error(client, spec)
    assert "(7 - 3 + 2*0)/5 + 1 = 1.8" in error["message"]
    # (7 - 3)/S + 1 is whole for S = 1, 2 and 4; 4 is the largest up to the 5 asked for.
    assert error["fix"] == set_fix("set stride to 4", stride=4)
    body = await shapes(client, apply_fix(spec, error))
    assert body["valid"] and body["layers"][0]["output_shape"] == [2, 2, 2]
    assert body["layers"][0]["formula"].startswith("(7 - 3 + 2*0)/4 + 1 = 2")


async def test_a_stride_that_fits_one_side_only_is_fixed_for_both(client):
    spec = net(conv(stride=3), h=9, w=7)  # spans 6 and 4: 3 divides 6 but not 4
    error = await only_error(client, spec)
    assert error["fix"] == set_fix("set stride to 2", stride=2)
    await assert_fixed(client, spec, error)


async def test_a_pool_without_a_stride_gets_one_that_fits(client):
    spec = net({"type": "maxpool", "size": 3}, h=8, w=8)  # stride 3 on a span of 5
    error = await only_error(client, spec)
    assert error["field"] == "stride" and error["fix"] == set_fix("set stride to 1", stride=1)
    await assert_fixed(client, spec, error)


async def test_same_padding_with_a_stride_is_fixed_with_stride_1(client):
    spec = net(conv(padding="same", stride=2))
    error = await only_error(client, spec)
    assert error["fix"] == set_fix("set stride to 1", stride=1)
    await assert_fixed(client, spec, error)


async def test_same_padding_with_an_even_kernel_is_fixed_with_the_next_odd_one(client):
    spec = net(conv(padding="same", kernel_size=4))
    error = await only_error(client, spec)
    assert error["fix"] == set_fix("set kernel size to 5", kernel_size=5)
    await assert_fixed(client, spec, error)


async def test_pool_padding_over_half_the_window_is_fixed(client):
    spec = net({"type": "maxpool", "size": 2, "padding": 2}, h=8, w=8)
    error = await only_error(client, spec)
    assert error["field"] == "padding"
    assert error["fix"] == set_fix("set padding to 0", padding=0)  # as the suggestion says
    assert error["suggestion"] == "Use padding 0."
    await assert_fixed(client, spec, error)


async def test_a_kernel_larger_than_the_input_is_fixed_with_one_that_fits(client):
    spec = net(conv(kernel_size=9, padding=0))
    error = await only_error(client, spec)
    assert error["field"] == "kernel_size"
    assert error["fix"] == set_fix("set kernel size to 7", kernel_size=7)
    await assert_fixed(client, spec, error)


async def test_a_pool_window_larger_than_the_input_keeps_stride_equal_to_size(client):
    spec = net({"type": "maxpool", "size": 12}, h=8, w=8)
    error = await only_error(client, spec)
    assert error["fix"] == set_fix("set size to 8", size=8, stride=8)
    fixed = await assert_fixed(client, spec, error)
    assert (await shapes(client, fixed))["layers"][0]["output_shape"] == [1, 1, 1]


async def test_a_pool_window_on_a_non_square_input_gets_a_size_that_steps_evenly(client):
    spec = net({"type": "avgpool", "size": 9}, h=6, w=8)  # 6 and 8: a 2x2 window steps evenly
    error = await only_error(client, spec)
    assert error["fix"] == set_fix("set size to 2", size=2, stride=2)
    await assert_fixed(client, spec, error)


# -- layers and weights ------------------------------------------------------------------------
async def test_a_dense_layer_on_maps_is_fixed_by_a_flatten_before_it(client):
    spec = net(conv(), {"type": "dense", "units": 3})
    error = await only_error(client, spec)
    assert error["layer"] == 1
    assert error["fix"] == {
        "label": "add a flatten layer before it",
        "set": None,
        "insert_before": {"type": "flatten"},
        "drop": None,
    }
    fixed = await assert_fixed(client, spec, error)
    assert [layer["type"] for layer in fixed["layers"]] == ["conv", "flatten", "dense"]


DROP = {
    "label": "drop the given weights (use the seed)",
    "set": None,
    "insert_before": None,
    "drop": ["weights", "bias"],
}


async def test_weights_of_the_wrong_shape_are_fixed_by_dropping_them(client):
    spec = net(conv(filters=1, weights=[[[[1.0]] * 3] * 3], bias=[0.0, 1.0]), c=3)  # C is 3
    body = await shapes(client, spec)
    assert not body["valid"] and {e["field"] for e in body["errors"]} == {"weights", "bias"}
    assert all(e["fix"] == DROP for e in body["errors"])
    await assert_fixed(client, spec, body["errors"][0])


async def test_ragged_weights_are_a_422_with_the_same_fix(client):
    spec = net(conv(filters=1, kernel_size=2, weights=[[[[1]], [[1], [2]]]]))
    r = await client.post(f"{API}/shapes", json=spec)
    assert r.status_code == 422
    error = r.json()["detail"]["errors"][0]
    assert error["field"] == "weights" and error["fix"] == DROP
    await assert_fixed(client, spec, error)


async def test_an_unknown_init_is_fixed_with_he(client):
    spec = net(conv(init="sobel"))
    error = await only_error(client, spec)
    assert error["fix"] == set_fix("set init to he", init="he")
    await assert_fixed(client, spec, error)


async def test_a_preset_kernel_with_another_size_is_fixed_with_size_3(client):
    spec = net(conv(init="sobel_x", kernel_size=5))
    error = await only_error(client, spec)
    assert error["fix"] == set_fix("set kernel size to 3", kernel_size=3)
    await assert_fixed(client, spec, error)


async def test_a_problem_with_no_single_change_has_no_fix(client):
    spec = net({"type": "flatten"}, conv())  # a conv after flatten: move it, not one field
    error = await only_error(client, spec)
    assert error["fix"] is None


# -- this server's limits ----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("layer", "limit", "field"),
    [
        (conv(filters=9), {"max_filters": 8}, "filters"),
        (conv(kernel_size=7), {"max_kernel_size": 5}, "kernel_size"),
        ({"type": "maxpool", "size": 6}, {"max_kernel_size": 4}, "size"),
        ({"type": "dense", "units": 20}, {"max_units": 16}, "units"),
    ],
)
async def test_a_field_over_a_limit_is_fixed_with_the_limit(make_app, layer, limit, field):
    spec = net({"type": "flatten"}, layer) if layer["type"] == "dense" else net(layer, h=8, w=8)
    most = next(iter(limit.values()))
    async with client_for(make_app(**limit)) as client:
        error = await only_error(client, spec)
        assert error["fix"] == set_fix(f"set {field.replace('_', ' ')} to {most}", **{field: most})
        await assert_fixed(client, spec, error)


async def test_an_input_over_the_size_limit_is_fixed_in_the_input(make_app):
    spec = net(conv(), h=40, w=8)
    async with client_for(make_app(max_input_side=32)) as client:
        error = await only_error(client, spec)
        assert (error["layer"], error["field"]) == (None, "input.height")
        assert error["fix"] == set_fix("set height to 32", height=32)
        fixed = await assert_fixed(client, spec, error)
    assert fixed["input"] == {"height": 32, "width": 8, "channels": 1}


async def test_too_many_layers_has_no_fix(make_app):
    async with client_for(make_app(max_layers=2)) as client:
        error = await only_error(client, net(*[{"type": "relu"}] * 3))
    assert error["fix"] is None


# -- the same fix wherever the network comes from ----------------------------------------------
async def test_forward_refuses_an_impossible_network_with_the_same_fix(client, png_bytes):
    spec = net(conv(stride=5))
    r = await client.post(
        f"{API}/forward",
        files={"image": ("i.png", png_bytes, "image/png")},
        data={"network": json.dumps(spec)},
    )
    assert r.status_code == 422
    assert r.json()["detail"]["errors"][0]["fix"] == set_fix("set stride to 4", stride=4)


async def test_openapi_documents_the_fix(client):
    schemas = (await client.get("/openapi.json")).json()["components"]["schemas"]
    fix = schemas["Issue"]["properties"]["fix"]
    assert "single change" in fix["description"]
    assert "fix" not in schemas["Issue"]["required"]
    assert set(schemas["IssueFix"]["properties"]) == {"label", "set", "insert_before", "drop"}
