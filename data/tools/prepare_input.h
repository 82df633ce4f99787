// Input side of `prepare`: finding the input files, grouping them into partitions (the
// unit of work per MPI rank and of resuming), and reading documents out of them.
#pragma once
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace gpt::data::prepare {

// Regular files under the given paths (directories recursively), sorted by path so
// every rank sees the same list.
std::vector<std::string> list_input_files(const std::vector<std::string>& paths);

// Consecutive files grouped until a group holds >= target_bytes (one large file is a
// group by itself). Depends only on the file list and sizes, so it is the same on
// every rank and every re-run.
std::vector<std::vector<std::string>> make_partitions(const std::vector<std::string>& files,
                                                      int64_t target_bytes);

// Calls on_doc(text) for every non-empty document of `file`: the whole file for plain
// text, the "text" field of each line for JSON lines (".jsonl", ".json" files, or
// `jsonl` forced). Throws std::runtime_error naming file:line on malformed JSON.
void read_documents(const std::string& file, bool force_jsonl,
                    const std::function<void(std::string&&)>& on_doc);

// The value of the top-level string field `key` of one JSON object (decoding escapes,
// \uXXXX and surrogate pairs to UTF-8); false when the object has no such string field.
// Throws std::runtime_error(what) on malformed JSON.
bool json_string_field(const std::string& line, const std::string& key, std::string& out);

}  // namespace gpt::data::prepare
