// Support for fuzz targets whose parser reads a path, not bytes: the input is written to
// a file in a private scratch directory (one per fuzzing process, removed at exit).
#pragma once
#include <cstddef>
#include <cstdint>
#include <string>

namespace gpt::fuzz {

// The process's scratch directory, created on first use under $TMPDIR (or /tmp).
const std::string& scratch_dir();

// Writes bytes [data, data + size) to scratch_dir()/name, replacing it; returns the path.
std::string write_input(const std::string& name, const uint8_t* data, size_t size);

}  // namespace gpt::fuzz
