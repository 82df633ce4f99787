"""Writes reference tensors in core's checkpoint format (core/checkpoint/hdf5_file.h), so the
C++ tests read them with CheckpointReader: attrs format_version=[2] (int64) and magic
(NUL-terminated fixed-length string), float32 datasets named flat ('/' -> '|')."""
import os

import h5py
import numpy as np


def write_c_string_attr(f, name, value):
    """A NUL-terminated fixed-length string, as core's CheckpointWriter writes it. h5py's
    default is NULLPAD without the NUL, which CheckpointReader::attr_str reads back one
    character short ("gptrain-checkpoin") and then rejects."""
    tid = h5py.h5t.C_S1.copy()
    tid.set_size(len(value) + 1)
    tid.set_strpad(h5py.h5t.STR_NULLTERM)
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    attr = h5py.h5a.create(f.id, name.encode(), tid, space)
    attr.write(np.array(value + b"\0", dtype="S%d" % (len(value) + 1)), mtype=tid)


def write_h5(path, tensors, int_attrs):
    """tensors: name -> torch tensor (stored float32); int_attrs: name -> int."""
    tmp = path + ".tmp"  # renamed when complete: a crash never leaves a half reference
    with h5py.File(tmp, "w") as f:
        f.attrs["format_version"] = np.array([2], dtype=np.int64)
        write_c_string_attr(f, "magic", b"gptrain-checkpoint")
        for k, v in int_attrs.items():
            f.attrs[k] = np.array([v], dtype=np.int64)
        for name, t in tensors.items():
            f.create_dataset(name.replace("/", "|"),
                             data=t.detach().cpu().double().numpy().astype(np.float32))
    os.replace(tmp, path)
