"""Runs and networks as self-describing byte blobs, for the stores shared between processes.

A blob is `MAGIC` (8 bytes), the header length (8 bytes, little-endian), a JSON header, then
each array's raw bytes at a 64-byte aligned offset. Reading needs no copy: the arrays are views of
whatever buffer holds the blob (an mmap of a file, the bytes Redis returned), so a request for one
layer touches only that layer's pages. (np.savez would copy every member out of a zip on load.)

A run's blob names its network by key: the SHA-256 of the network's own blob, which holds the
spec and every conv and dense layer's resolved weights. Runs of the same network (a preset model,
or the page sending the same layers with another image) share one stored network. A gradients
blob holds one backward pass of a run (for one target and loss); its store keeps it with the run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import struct
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from app.cnn import (
    ConvLayer,
    ConvSpec,
    DenseLayer,
    DenseSpec,
    FlattenSpec,
    GlobalPoolSpec,
    InputSpec,
    Network,
    NetworkSpec,
    PoolSpec,
    ReluSpec,
    build_network,
)
from app.cnn.backprop import Gradients
from app.storage.runs.memory import RUN_ID, GradientKey, Run, run_too_large

RUN_MAGIC = b"CNNXRUN1"
NETWORK_MAGIC = b"CNNXNET1"
GRADIENTS_MAGIC = b"CNNXGRD1"
_ALIGN = 64
_LENGTH = struct.Struct("<Q")
_SPEC_CLASSES = {
    cls.__name__: cls
    for cls in (ConvSpec, ReluSpec, PoolSpec, GlobalPoolSpec, FlattenSpec, DenseSpec)
}
_ARRAY_FIELDS = ("weights", "bias")

Buffer = bytes | bytearray | memoryview | mmap.mmap


class BlobError(ValueError):
    """Bytes that are not a whole blob of the expected kind (truncated, foreign, damaged)."""


@dataclass(frozen=True)
class Blob:
    """Encoded bytes as parts (header, then each array) so big arrays are written without a join.

    nbytes is the stored size; key is the SHA-256 hex digest of the parts, in order.
    """

    parts: tuple[bytes | memoryview, ...]
    nbytes: int

    def to_bytes(self) -> bytes:
        return b"".join(self.parts)

    @property
    def key(self) -> str:
        digest = hashlib.sha256()
        for part in self.parts:
            digest.update(part)
        return digest.hexdigest()


def _pad(n: int) -> int:
    return -n % _ALIGN


def pack(magic: bytes, meta: dict, arrays: dict[str, np.ndarray]) -> Blob:
    """meta (JSON-ready) and named arrays of any shape -> a Blob (little-endian, C order)."""
    contiguous = {
        name: np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<")) for name, a in arrays.items()
    }
    index, offset = [], 0
    for name, a in contiguous.items():
        entry = {"name": name, "dtype": a.dtype.str, "shape": list(a.shape), "offset": offset}
        index.append(entry)
        offset += a.nbytes + _pad(a.nbytes)
    header = json.dumps({**meta, "arrays": index}, sort_keys=True, default=_json_scalar).encode()
    head = magic + _LENGTH.pack(len(header)) + header
    parts: list[bytes | memoryview] = [head, b"\0" * _pad(len(head))]
    for a in contiguous.values():
        parts += [memoryview(a).cast("B"), b"\0" * _pad(a.nbytes)]
    parts = [p for p in parts if len(p)]
    return Blob(tuple(parts), sum(len(p) for p in parts))


def unpack(buffer: Buffer, magic: bytes) -> tuple[dict, dict[str, np.ndarray]]:
    """A blob's meta and its arrays, as read-only views of buffer (bytes, mmap, memoryview)."""
    raw = np.frombuffer(buffer, dtype=np.uint8)
    start = len(magic) + _LENGTH.size
    if raw.size < start or bytes(raw[: len(magic)]) != magic:
        raise BlobError(f"not a {magic.decode()} blob")
    (length,) = _LENGTH.unpack(bytes(raw[len(magic) : start]))
    if start + length > raw.size:
        raise BlobError("truncated header")
    try:
        meta = json.loads(bytes(raw[start : start + length]))
    except ValueError as e:
        raise BlobError(f"damaged header: {e}") from None
    base = end = start + length + _pad(start + length)
    arrays = {}
    for entry in meta.pop("arrays"):
        dtype = np.dtype(entry["dtype"])
        size = int(np.prod(entry["shape"], dtype=np.int64)) * dtype.itemsize
        begin = base + entry["offset"]
        end = max(end, begin + size + _pad(size))
        if begin + size > raw.size:
            raise BlobError(f"truncated array {entry['name']}")
        a = raw[begin : begin + size].view(dtype).reshape(entry["shape"])
        a.flags.writeable = False
        arrays[entry["name"]] = a
    if end != raw.size:  # a blob is exactly as long as its header says, padding included
        raise BlobError(f"{raw.size} bytes where the header describes {end}")
    return meta, arrays


def _json_scalar(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# -- networks ----------------------------------------------------------------------------------
def encode_network(network: Network) -> Blob:
    """The spec (without arrays) and every conv/dense layer's resolved weights and bias.

    Arrays: `layers.<i>.weights` (K, F, F, C) or (units, inputs), `layers.<i>.bias` (K,) or
    (units,), float32. Decoding builds the same network whatever the seed or preset was.
    """
    spec = network.spec
    layers = []
    for layer_spec in spec.layers:
        fields = {
            f.name: getattr(layer_spec, f.name)
            for f in dataclasses.fields(layer_spec)
            if f.name not in _ARRAY_FIELDS
        }
        layers.append({"class": type(layer_spec).__name__, **fields})
    arrays = {}
    for i, layer in enumerate(network.layers):
        if isinstance(layer, ConvLayer | DenseLayer):
            arrays[f"layers.{i}.weights"] = layer.weights
            arrays[f"layers.{i}.bias"] = layer.bias
    meta = {"input": dataclasses.asdict(spec.input), "seed": spec.seed, "layers": layers}
    return pack(NETWORK_MAGIC, meta, arrays)


def decode_network(buffer: Buffer) -> Network:
    """The network a blob of encode_network describes, built with its stored weights."""
    meta, arrays = unpack(buffer, NETWORK_MAGIC)
    layers = []
    for i, fields in enumerate(meta["layers"]):
        cls = _SPEC_CLASSES[fields.pop("class")]
        if cls in (ConvSpec, DenseSpec):
            fields.update(weights=arrays[f"layers.{i}.weights"], bias=arrays[f"layers.{i}.bias"])
        layers.append(cls(**fields))
    spec = NetworkSpec(InputSpec(**meta["input"]), tuple(layers), seed=meta["seed"])
    return build_network(spec)


class NetworkKeys:
    """Encodes networks, hashing each Network object once (preset models are reused)."""

    def __init__(self) -> None:
        self._keys: weakref.WeakKeyDictionary[Network, str] = weakref.WeakKeyDictionary()
        self._lock = threading.Lock()

    def encode(self, network: Network) -> tuple[str, Blob]:
        """(key, blob); the blob's parts are views of the weights, so encoding copies nothing."""
        blob = encode_network(network)
        with self._lock:
            key = self._keys.get(network)
        if key is None:
            key = blob.key
            with self._lock:
                self._keys[network] = key
        return key, blob


class NetworkCache:
    """Built networks by key, in this process; least recently used dropped beyond max_bytes of
    weights. Keys are content hashes, so a cached network is never stale."""

    def __init__(self, max_bytes: int = 64 * 2**20) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[str, tuple[Network, int]] = OrderedDict()
        self._bytes = 0

    def get(self, key: str) -> Network | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None:
                return None
            self._items.move_to_end(key)
            return entry[0]

    def put(self, key: str, network: Network) -> None:
        size = sum(
            int(layer.weights.nbytes + layer.bias.nbytes)
            for layer in network.layers
            if isinstance(layer, ConvLayer | DenseLayer)
        )
        if size > self.max_bytes:
            return
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None:
                self._bytes -= old[1]
            while self._items and self._bytes + size > self.max_bytes:
                _, (_, dropped) = self._items.popitem(last=False)
                self._bytes -= dropped
            self._items[key] = (network, size)
            self._bytes += size


class _Recent:
    """Things this process decoded lately: key -> (version, value, nbytes), least recently used
    dropped beyond max_items or max_bytes of blobs. Thread-safe."""

    def __init__(self, max_items: int, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._max_items = max_items
        self._lock = threading.Lock()
        self._items: OrderedDict[object, tuple[object, object, int]] = OrderedDict()
        self._bytes = 0

    def _get(self, key: object, version: object) -> object | None:
        with self._lock:
            entry = self._items.get(key)
            if entry is None or entry[0] != version:
                return None
            self._items.move_to_end(key)
            return entry[1]

    def _put(self, key: object, version: object, value: object, nbytes: int) -> None:
        if nbytes > self.max_bytes:
            return
        with self._lock:
            self._pop(key)
            while self._items and (
                self._bytes + nbytes > self.max_bytes or len(self._items) >= self._max_items
            ):
                self._pop(next(iter(self._items)))
            self._items[key] = (version, value, nbytes)
            self._bytes += nbytes

    def _discard(self, matches: Callable[[object], bool]) -> None:
        with self._lock:
            for key in [key for key in self._items if matches(key)]:
                self._pop(key)

    def _pop(self, key: object) -> None:
        entry = self._items.pop(key, None)
        if entry is not None:
            self._bytes -= entry[2]


class RecentRuns(_Recent):
    """Runs this process decoded lately: run_id -> (version, network key, Run), least recently
    used dropped beyond max_runs or max_bytes of blobs. Thread-safe.

    A store still asks its shared storage on every get whether the run is kept (and renews it);
    only then does it take the run from here, if the stored version (a file's inode; Redis runs
    are never rewritten) is the one decoded. Saves re-reading and re-parsing a run for each of
    the many requests for its images. (max_runs also bounds open files: a mapped run holds one.)
    """

    def __init__(self, max_runs: int = 64, max_bytes: int = 64 * 2**20) -> None:
        super().__init__(max_runs, max_bytes)
        self.max_runs = max_runs

    def get(self, run_id: str, version: object) -> tuple[str, Run] | None:
        """(network key, run) if run_id was decoded from this version, else None."""
        return self._get(run_id, version)  # type: ignore[return-value]

    def put(self, run_id: str, version: object, network_key: str, run: Run, nbytes: int) -> None:
        self._put(run_id, version, (network_key, run), nbytes)

    def discard(self, run_id: str) -> None:
        self._discard(lambda key: key == run_id)


class RecentGradients(_Recent):
    """Gradients this process decoded lately, by (run_id, target, loss) and version, as
    RecentRuns keeps runs: the store asks its shared storage first whether they are kept (which
    renews their run), then takes them from here. Thread-safe."""

    def __init__(self, max_items: int = 16, max_bytes: int = 64 * 2**20) -> None:
        super().__init__(max_items, max_bytes)

    def get(self, key: GradientKey, version: object) -> Gradients | None:
        return self._get(key, version)  # type: ignore[return-value]

    def put(self, key: GradientKey, version: object, grads: Gradients, nbytes: int) -> None:
        self._put(key, version, grads, nbytes)

    def discard_run(self, run_id: str) -> None:
        """Forget every gradient set of run_id."""
        self._discard(lambda key: key[0] == run_id)  # type: ignore[index]


# -- runs --------------------------------------------------------------------------------------
def encode_run(run: Run, network_key: str, created: float) -> Blob:
    """A run's input (H, W, C) and outputs (h, w, c) or (n,) float32, labels, model, times."""
    meta = {
        "run_id": run.run_id,
        "network": network_key,
        "labels": run.labels,
        "model": run.model,
        "created": created,
        "outputs": len(run.outputs),
    }
    arrays = {"input": run.input, **{f"outputs.{i}": o for i, o in enumerate(run.outputs)}}
    return pack(RUN_MAGIC, meta, arrays)


def decode_run(buffer: Buffer, network_for: Callable[[str], Network]) -> Run:
    """The Run in a blob of encode_run; its arrays are read-only views of buffer.

    network_for(key) gives the run's network (and raises if the store no longer has it).
    """
    meta, arrays = unpack(buffer, RUN_MAGIC)
    network = network_for(meta["network"])
    outputs = [arrays[f"outputs.{i}"] for i in range(meta["outputs"])]
    if len(outputs) != len(network.layers):
        raise BlobError(f"{len(outputs)} outputs for {len(network.layers)} layers")
    return Run(meta["run_id"], network, arrays["input"], outputs, meta["labels"], meta["model"])


def encode_for_store(
    keys: NetworkKeys, run: Run, created: float, max_bytes: int
) -> tuple[str, Blob, Blob]:
    """(network key, network blob, run blob) for a shared store to keep.

    ValueError for a run id that is not RUN_ID (it names a file or key); RunTooLargeError (413)
    when the two blobs together exceed the store's max_bytes.
    """
    if not RUN_ID.match(run.run_id):
        raise ValueError(f"run id {run.run_id!r} is not {RUN_ID.pattern}")
    key, network_blob = keys.encode(run.network)
    run_blob = encode_run(run, key, created=created)
    if run_blob.nbytes + network_blob.nbytes > max_bytes:
        raise run_too_large(run_blob.nbytes + network_blob.nbytes, max_bytes)
    return key, network_blob, run_blob


# -- gradients ---------------------------------------------------------------------------------
_GRADIENT_LISTS = ("outputs", "output_grads", "weight_grads", "bias_grads", "pre_activation_grads")


def encode_gradients(grads: Gradients) -> Blob:
    """Every array of one backward pass (app.cnn.backprop.Gradients) with its target, loss and
    loss value. Arrays: `image`, `input_grad` (H, W, C), and `<list>.<i>` for each layer's
    `outputs`, `output_grads`, and the `weight_grads`, `bias_grads`, `pre_activation_grads` of
    the layers that have them. An array that is another's (a linear layer's dL/dz is its dL/dy)
    is stored once and named in `aliases`, so the decoded one is the same array too."""
    arrays: dict[str, np.ndarray] = {"image": grads.image, "input_grad": grads.input_grad}
    named = {id(grads.image): "image", id(grads.input_grad): "input_grad"}
    aliases = {}
    for group in _GRADIENT_LISTS:
        for i, a in enumerate(getattr(grads, group)):
            if a is None:
                continue
            name = f"{group}.{i}"
            if id(a) in named:
                aliases[name] = named[id(a)]
            else:
                named[id(a)] = name
                arrays[name] = a
    meta = {
        "target": grads.target,
        "loss": grads.loss,
        "loss_value": grads.loss_value,
        "layers": len(grads.outputs),
        "aliases": aliases,
    }
    return pack(GRADIENTS_MAGIC, meta, arrays)


def decode_gradients(buffer: Buffer) -> Gradients:
    """The Gradients in a blob of encode_gradients; its arrays are read-only views of buffer."""
    meta, arrays = unpack(buffer, GRADIENTS_MAGIC)
    aliases = meta["aliases"]

    def array(name: str) -> np.ndarray | None:
        return arrays.get(aliases.get(name, name))

    lists = {
        group: [array(f"{group}.{i}") for i in range(meta["layers"])] for group in _GRADIENT_LISTS
    }
    if any(a is None for group in ("outputs", "output_grads") for a in lists[group]):
        raise BlobError("a layer's output or its gradient is missing")
    return Gradients(
        target=meta["target"],
        loss=meta["loss"],
        loss_value=meta["loss_value"],
        image=arrays["image"],
        input_grad=arrays["input_grad"],
        **lists,  # type: ignore[arg-type]
    )
