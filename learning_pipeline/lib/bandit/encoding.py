"""Row encodings shared by the policy and its evaluation: Arrow dictionary codes, distinct rows, candidate
sets as masks. Integer work only, no per-row Python."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc


def encode(values: Any) -> tuple[np.ndarray, list]:
    """Codes (n,) into the distinct values (NULL is a value of its own), via Arrow dictionary encoding."""
    arr = (
        values
        if isinstance(values, (pa.Array, pa.ChunkedArray))
        else pa.array(np.asarray(values, dtype=object), type=pa.string(), from_pandas=True)
    )
    encoded = pc.dictionary_encode(arr, null_encoding="encode")
    if isinstance(encoded, pa.ChunkedArray):
        encoded = (
            encoded.unify_dictionaries().combine_chunks()
            if encoded.num_chunks
            else pa.array([], pa.dictionary(pa.int32(), pa.string()))
        )
    return encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64), encoded.dictionary.to_pylist()


def factorize_rows(frame: pd.DataFrame) -> tuple[np.ndarray, pd.DataFrame]:
    """Codes (n,) and the distinct rows of `frame` (NULLs kept as a value); integer work only."""
    key = np.zeros(len(frame), dtype=np.int64)
    for column in frame.columns:
        codes, uniques = encode(frame[column])
        key = key * (len(uniques) + 1) + codes
    _, first, codes = np.unique(key, return_index=True, return_inverse=True)
    return codes.ravel(), frame.iloc[first].reset_index(drop=True)


def candidate_mask(candidate_agents: Any, agents: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(n, k) mask of each event's candidate agents and a (n,) flag for events that listed any."""
    arr = (
        candidate_agents
        if isinstance(candidate_agents, (pa.Array, pa.ChunkedArray))
        else pa.array(list(candidate_agents), type=pa.list_(pa.string()))
    )
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    n = len(arr)
    mask = np.zeros((n, len(agents)), dtype=bool)
    if n == 0:
        return mask, np.zeros(0, dtype=bool)
    flat = arr.flatten()
    parents = pc.list_parent_indices(arr).to_numpy()
    codes = pc.index_in(flat, value_set=pa.array(list(agents), pa.string())).to_numpy(zero_copy_only=False)
    codes = np.where(np.isnan(codes.astype(float)), -1, codes).astype(np.int64)
    ok = codes >= 0
    mask[parents[ok], codes[ok]] = True
    return mask, mask.any(axis=1)
