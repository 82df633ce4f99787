#include "data/shard.h"

#include <hdf5.h>

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <cstdio>
#include <mutex>
#include <stdexcept>

namespace gpt::data {
namespace fs = std::filesystem;
namespace {

// HDF5 reads a chunk whole, so a random T+1 window costs its 1-2 chunks: smaller chunks
// read less per sample but grow the chunk index an open shard keeps in memory. 8192
// tokens (16 KiB of uint16) measured best: ~95 M tokens/s at ~4 MB per open 64 M-token
// shard, against ~55 M tokens/s with 16384 and ~6 MB per shard with 4096.
constexpr hsize_t kTokenChunk = 8192;
constexpr hsize_t kOffsetChunk = 4096;

// Debian's libhdf5 is built without thread safety; the sampler's prefetch threads and
// the trainer's own thread may all touch HDF5, so every call is serialised here.
std::recursive_mutex& hdf5_lock() {
  static std::recursive_mutex m;
  static std::once_flag quiet;
  // HDF5 prints its own error stack to stderr by default; we report our own message.
  std::call_once(quiet, [] {
    H5Eset_auto2(H5E_DEFAULT, nullptr, nullptr);
    // HDF5 keeps freed internal blocks on free lists that never shrink by default; cap
    // them so opening and closing shards all day does not ratchet memory up.
    H5set_free_list_limits(4 << 20, 1 << 20, 4 << 20, 1 << 20, 8 << 20, 2 << 20);
  });
  return m;
}

[[noreturn]] void fail(const std::string& path, const std::string& what) {
  throw std::runtime_error("shard " + path + ": " + what);
}

// What failed while writing, with the system's reason when there is one (a full disk or
// file size limit shows as ENOSPC / EFBIG) and what to do.
std::string write_failure(const std::string& what) {
  const int err = errno;
  return what + (err ? std::string(": ") + std::strerror(err) : std::string()) +
         " (disk full? free space and run again; the shard was not written)";
}

void fsync_or_fail(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) fail(path, std::string("cannot open to fsync: ") + std::strerror(errno));
  const bool ok = ::fsync(fd) == 0;
  const int err = errno;
  if (::close(fd) != 0 || !ok) fail(path, std::string("fsync failed: ") + std::strerror(ok ? errno : err));
}

// Owns one hid_t and closes it with the matching H5*close.
struct Hid {
  hid_t id = -1;
  herr_t (*closer)(hid_t) = nullptr;
  Hid() = default;
  Hid(hid_t i, herr_t (*c)(hid_t)) : id(i), closer(c) {}
  Hid(Hid&& o) noexcept : id(o.id), closer(o.closer) { o.id = -1; }
  Hid& operator=(Hid&& o) noexcept {
    reset();
    id = o.id, closer = o.closer, o.id = -1;
    return *this;
  }
  ~Hid() { reset(); }
  void reset() {
    if (id >= 0 && closer) closer(id);
    id = -1;
  }
  bool ok() const { return id >= 0; }
};

bool has_attr(hid_t obj, const char* name) { return H5Aexists(obj, name) > 0; }

// H5Aread fills as many values as the attribute holds, so an attribute that should be
// one value must be checked to hold one before it is read into one.
bool holds_one_value(hid_t attr) {
  Hid space(H5Aget_space(attr), H5Sclose);
  return space.ok() && H5Sget_simple_extent_npoints(space.id) == 1;
}

int64_t attr_int(hid_t file, const char* name, const std::string& path) {
  if (!has_attr(file, name)) fail(path, std::string("missing attribute '") + name + "'");
  Hid a(H5Aopen(file, name, H5P_DEFAULT), H5Aclose);
  if (a.ok() && !holds_one_value(a.id)) fail(path, std::string("attribute '") + name + "' is not one integer");
  int64_t v = 0;
  if (!a.ok() || H5Aread(a.id, H5T_NATIVE_INT64, &v) < 0)
    fail(path, std::string("cannot read attribute '") + name + "'");
  return v;
}

std::string attr_string(hid_t file, const char* name, const std::string& path) {
  if (!has_attr(file, name)) fail(path, std::string("missing attribute '") + name + "'");
  Hid a(H5Aopen(file, name, H5P_DEFAULT), H5Aclose);
  Hid t(H5Aget_type(a.id), H5Tclose);
  if (!a.ok() || !t.ok() || H5Tget_class(t.id) != H5T_STRING || !holds_one_value(a.id))
    fail(path, std::string("attribute '") + name + "' is not a string");
  if (H5Tis_variable_str(t.id) > 0) {  // as h5py writes them
    char* s = nullptr;
    if (H5Aread(a.id, t.id, &s) < 0) fail(path, std::string("cannot read '") + name + "'");
    std::string out = s ? s : "";
    H5free_memory(s);
    return out;
  }
  std::string out(H5Tget_size(t.id), '\0');
  if (H5Aread(a.id, t.id, out.data()) < 0) fail(path, std::string("cannot read '") + name + "'");
  out.resize(out.find('\0') == std::string::npos ? out.size() : out.find('\0'));
  return out;
}

void write_attr_int(hid_t file, const char* name, int64_t v) {
  Hid s(H5Screate(H5S_SCALAR), H5Sclose);
  Hid a(H5Acreate2(file, name, H5T_STD_I64LE, s.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5Awrite(a.id, H5T_NATIVE_INT64, &v);
}

void write_attr_string(hid_t file, const char* name, const std::string& v) {
  Hid t(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(t.id, v.empty() ? 1 : v.size());
  H5Tset_strpad(t.id, H5T_STR_NULLPAD);
  Hid s(H5Screate(H5S_SCALAR), H5Sclose);
  Hid a(H5Acreate2(file, name, t.id, s.id, H5P_DEFAULT, H5P_DEFAULT), H5Aclose);
  H5Awrite(a.id, t.id, v.empty() ? "" : v.data());
}

int64_t dataset_length(hid_t ds) {
  Hid sp(H5Dget_space(ds), H5Sclose);
  if (H5Sget_simple_extent_ndims(sp.id) != 1) return -1;
  hsize_t n = 0;
  H5Sget_simple_extent_dims(sp.id, &n, nullptr);
  return int64_t(n);
}

// Opens a 1-D chunked, extendible dataset for appending.
Hid create_dataset(hid_t file, const char* name, hid_t type, hsize_t chunk) {
  hsize_t zero = 0, unlimited = H5S_UNLIMITED;
  Hid sp(H5Screate_simple(1, &zero, &unlimited), H5Sclose);
  Hid dcpl(H5Pcreate(H5P_DATASET_CREATE), H5Pclose);
  H5Pset_chunk(dcpl.id, 1, &chunk);
  return Hid(H5Dcreate2(file, name, type, sp.id, H5P_DEFAULT, dcpl.id, H5P_DEFAULT), H5Dclose);
}

void append(hid_t ds, hid_t mem_type, const void* data, hsize_t at, hsize_t n) {
  hsize_t total = at + n;
  H5Dset_extent(ds, &total);
  Hid fs(H5Dget_space(ds), H5Sclose);
  H5Sselect_hyperslab(fs.id, H5S_SELECT_SET, &at, nullptr, &n, nullptr);
  Hid ms(H5Screate_simple(1, &n, nullptr), H5Sclose);
  if (H5Dwrite(ds, mem_type, ms.id, fs.id, H5P_DEFAULT, data) < 0)
    throw std::runtime_error("HDF5 write failed");
}

// The checks shared by shard_read_info and ShardReader, on an open file.
ShardInfo check_header(hid_t file, const std::string& path, const std::string& expected_tokenizer,
                       int64_t expected_vocab) {
  ShardInfo info;
  info.path = path;
  if (!has_attr(file, "format") || attr_string(file, "format", path) != kShardFormat)
    fail(path, std::string("not a token shard (attribute format != '") + kShardFormat +
                   "'); make shards with the prepare tool");
  int64_t version = attr_int(file, "format_version", path);
  if (version != kShardFormatVersion)
    fail(path, "shard format version " + std::to_string(version) + ", this build reads version " +
                   std::to_string(kShardFormatVersion) +
                   "; re-run prepare on the source text to rewrite the shards");
  info.meta.tokenizer = attr_string(file, "tokenizer", path);
  info.meta.vocab_size = attr_int(file, "vocab_size", path);
  info.meta.eot_token = attr_int(file, "eot_token", path);
  info.meta.source = attr_string(file, "source", path);
  info.token_count = attr_int(file, "token_count", path);
  info.doc_count = attr_int(file, "doc_count", path);
  if (!expected_tokenizer.empty() && info.meta.tokenizer != expected_tokenizer)
    fail(path, "made with tokenizer '" + info.meta.tokenizer + "' but the run uses '" +
                   expected_tokenizer + "'; re-run prepare with the run's tokenizer");
  if (expected_vocab > 0 && info.meta.vocab_size != expected_vocab)
    fail(path, "vocab_size " + std::to_string(info.meta.vocab_size) + " but the run expects " +
                   std::to_string(expected_vocab));
  if (info.meta.vocab_size <= 0 || info.token_count < 0 || info.doc_count < 0)
    fail(path, "corrupt header (non-positive vocab_size or negative counts)");
  for (auto [name, want] : {std::pair<const char*, int64_t>{"tokens", info.token_count},
                            {"doc_offsets", info.doc_count}}) {
    if (H5Lexists(file, name, H5P_DEFAULT) <= 0) fail(path, std::string("missing dataset '") + name + "'");
    Hid ds(H5Dopen2(file, name, H5P_DEFAULT), H5Dclose);
    int64_t got = ds.ok() ? dataset_length(ds.id) : -1;
    if (got != want)
      fail(path, std::string("truncated or corrupt: dataset '") + name + "' has " +
                     std::to_string(got) + " entries but the header says " + std::to_string(want) +
                     "; delete the file and re-run prepare");
  }
  return info;
}

Hid open_file(const std::string& path) {
  // Bound the memory an open shard costs, so the sampler's footprint depends on how many
  // shards it keeps open, never on their size: samples are random windows, so a large
  // raw-chunk cache (HDF5's default is 1 MiB per dataset) buys little; and the metadata
  // cache (chunk index nodes) is capped instead of growing to HDF5's default 32 MiB.
  Hid fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  H5Pset_cache(fapl.id, 0, 67, 4 * kTokenChunk * 2, 0.75);
  H5AC_cache_config_t mdc;
  mdc.version = H5AC__CURR_CACHE_CONFIG_VERSION;
  if (H5Pget_mdc_config(fapl.id, &mdc) >= 0) {
    mdc.set_initial_size = true;
    mdc.initial_size = 512 * 1024;
    mdc.min_size = 256 * 1024;
    mdc.max_size = 2 * 1024 * 1024;
    H5Pset_mdc_config(fapl.id, &mdc);
  }
  Hid f(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.id), H5Fclose);
  if (!f.ok()) fail(path, "cannot open as HDF5 (missing, truncated or not HDF5)");
  return f;
}

}  // namespace

ShardInfo shard_read_info(const std::string& path, const std::string& expected_tokenizer,
                          int64_t expected_vocab) {
  std::lock_guard<std::recursive_mutex> lock(hdf5_lock());
  Hid f = open_file(path);
  return check_header(f.id, path, expected_tokenizer, expected_vocab);
}

// ---------------------------------------------------------------------------- writer

struct ShardWriter::Handles {
  Hid file, tokens;
};

ShardWriter::ShardWriter(const std::string& path, const ShardMeta& meta)
    : h_(std::make_unique<Handles>()), path_(path), meta_(meta) {
  if (meta.vocab_size <= 0 || meta.eot_token < 0 || meta.eot_token >= meta.vocab_size)
    fail(path, "writer needs vocab_size > 0 and 0 <= eot_token < vocab_size");
  std::lock_guard<std::recursive_mutex> lock(hdf5_lock());
  std::string tmp = path + ".tmp";
  h_->file = Hid(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT), H5Fclose);
  if (!h_->file.ok()) fail(tmp, "cannot create");
  hid_t type = meta.vocab_size <= 65536 ? H5T_STD_U16LE : H5T_STD_U32LE;
  h_->tokens = create_dataset(h_->file.id, "tokens", type, kTokenChunk);
  if (!h_->tokens.ok()) fail(tmp, "cannot create dataset 'tokens'");
}

ShardWriter::~ShardWriter() {
  if (closed_) return;
  std::lock_guard<std::recursive_mutex> lock(hdf5_lock());
  h_.reset();
  std::remove((path_ + ".tmp").c_str());
}

void ShardWriter::add_document(const int32_t* ids, size_t n) {
  doc_offsets_.push_back(token_count_);
  for (size_t i = 0; i < n; ++i)
    if (ids[i] < 0 || ids[i] >= meta_.vocab_size)
      fail(path_, "token id " + std::to_string(ids[i]) + " outside vocab of " +
                      std::to_string(meta_.vocab_size));
  pending_.insert(pending_.end(), ids, ids + n);
  pending_.push_back(int32_t(meta_.eot_token));
  token_count_ += int64_t(n) + 1;
  if (pending_.size() >= 16 * kTokenChunk) flush_tokens();
}

void ShardWriter::flush_tokens() {
  if (pending_.empty()) return;
  std::lock_guard<std::recursive_mutex> lock(hdf5_lock());
  // Narrow in our own loop (ids are already range-checked) rather than via HDF5's
  // conversion path, which is slower and clips silently.
  errno = 0;
  try {
    if (meta_.vocab_size <= 65536) {
      std::vector<uint16_t> buf(pending_.begin(), pending_.end());
      append(h_->tokens.id, H5T_NATIVE_UINT16, buf.data(), hsize_t(written_), buf.size());
    } else {
      std::vector<uint32_t> buf(pending_.begin(), pending_.end());
      append(h_->tokens.id, H5T_NATIVE_UINT32, buf.data(), hsize_t(written_), buf.size());
    }
  } catch (const std::runtime_error&) {
    fail(path_ + ".tmp", write_failure("cannot write tokens"));
  }
  written_ += int64_t(pending_.size());
  pending_.clear();
}

void ShardWriter::close() {
  if (closed_) return;
  flush_tokens();
  std::lock_guard<std::recursive_mutex> lock(hdf5_lock());
  const std::string tmp = path_ + ".tmp";
  hid_t f = h_->file.id;
  errno = 0;
  Hid offsets = create_dataset(f, "doc_offsets", H5T_STD_I64LE, kOffsetChunk);
  if (!offsets.ok()) fail(tmp, write_failure("cannot create dataset 'doc_offsets'"));
  try {
    if (!doc_offsets_.empty())
      append(offsets.id, H5T_NATIVE_INT64, doc_offsets_.data(), 0, doc_offsets_.size());
  } catch (const std::runtime_error&) {
    fail(tmp, write_failure("cannot write 'doc_offsets'"));
  }
  offsets.reset();
  write_attr_string(f, "format", kShardFormat);
  write_attr_int(f, "format_version", kShardFormatVersion);
  write_attr_string(f, "tokenizer", meta_.tokenizer);
  write_attr_int(f, "vocab_size", meta_.vocab_size);
  write_attr_int(f, "eot_token", meta_.eot_token);
  write_attr_string(f, "source", meta_.source);
  // The counts go last: a file missing them (or disagreeing) is detected as incomplete.
  write_attr_int(f, "doc_count", int64_t(doc_offsets_.size()));
  write_attr_int(f, "token_count", token_count_);
  h_->tokens.reset();
  if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) fail(tmp, write_failure("flush failed"));
  const herr_t closed = H5Fclose(h_->file.id);
  h_->file.id = -1;
  if (closed < 0) fail(tmp, write_failure("close failed"));
  // Data on disk before the name: after a power loss the shard is complete or absent.
  fsync_or_fail(tmp);
  if (std::rename(tmp.c_str(), path_.c_str()) != 0)
    fail(path_, std::string("cannot rename the finished .tmp file into place: ") + std::strerror(errno));
  const std::string dir = fs::path(path_).parent_path().string();
  fsync_or_fail(dir.empty() ? "." : dir);
  closed_ = true;
}

// ---------------------------------------------------------------------------- reader

struct ShardReader::Handles {
  Hid file, tokens, offsets;
};

ShardReader::ShardReader(const std::string& path, const std::string& expected_tokenizer,
                         int64_t expected_vocab)
    : h_(std::make_unique<Handles>()) {
  std::lock_guard<std::recursive_mutex> lock(hdf5_lock());
  h_->file = open_file(path);
  info_ = check_header(h_->file.id, path, expected_tokenizer, expected_vocab);
  h_->tokens = Hid(H5Dopen2(h_->file.id, "tokens", H5P_DEFAULT), H5Dclose);
  h_->offsets = Hid(H5Dopen2(h_->file.id, "doc_offsets", H5P_DEFAULT), H5Dclose);
  Hid t(H5Dget_type(h_->tokens.id), H5Tclose);
  if (H5Tget_class(t.id) != H5T_INTEGER || H5Tget_sign(t.id) != H5T_SGN_NONE ||
      (H5Tget_size(t.id) != 2 && H5Tget_size(t.id) != 4))
    fail(path, "dataset 'tokens' is not uint16/uint32");
  wide_ = H5Tget_size(t.id) == 4;
  if (!wide_ && info_.meta.vocab_size > 65536) fail(path, "uint16 tokens but vocab_size > 65536");
  // Offsets must start at 0, increase strictly and stay inside the tokens: read in
  // chunk-sized hyperslabs so a large shard never needs them all in memory at once.
  std::vector<int64_t> buf;
  int64_t prev = -1;
  for (int64_t at = 0; at < info_.doc_count; at += int64_t(buf.size())) {
    buf.resize(size_t(std::min<int64_t>(64 * kOffsetChunk, info_.doc_count - at)));
    read_doc_offsets(at, int64_t(buf.size()), buf.data());
    for (size_t i = 0; i < buf.size(); ++i) {
      bool bad = (at + int64_t(i) == 0) ? buf[i] != 0 : buf[i] <= prev;
      if (bad || buf[i] >= info_.token_count)
        fail(path, "corrupt doc_offsets at document " + std::to_string(at + int64_t(i)) +
                       " (must start at 0, increase, and stay below token_count)");
      prev = buf[i];
    }
  }
}

ShardReader::~ShardReader() {
  std::lock_guard<std::recursive_mutex> lock(hdf5_lock());
  h_.reset();
}

namespace {
void read_slab(hid_t ds, hid_t mem_type, int64_t offset, int64_t n, void* out,
               const std::string& path, const char* what) {
  hsize_t start = hsize_t(offset), count = hsize_t(n);
  Hid fs(H5Dget_space(ds), H5Sclose);
  Hid ms(H5Screate_simple(1, &count, nullptr), H5Sclose);
  if (H5Sselect_hyperslab(fs.id, H5S_SELECT_SET, &start, nullptr, &count, nullptr) < 0 ||
      H5Dread(ds, mem_type, ms.id, fs.id, H5P_DEFAULT, out) < 0)
    fail(path, std::string("read of ") + what + " [" + std::to_string(offset) + ", +" +
                   std::to_string(n) + ") failed (file truncated or corrupt?)");
}
}  // namespace

void ShardReader::read(int64_t offset, int64_t n, int32_t* out) {
  if (offset < 0 || n < 0 || offset + n > info_.token_count)
    fail(info_.path, "read [" + std::to_string(offset) + ", +" + std::to_string(n) +
                         ") outside the " + std::to_string(info_.token_count) + " tokens");
  {
    std::lock_guard<std::recursive_mutex> lock(hdf5_lock());
    if (wide_) {
      wide_buf_.resize(size_t(n));
      read_slab(h_->tokens.id, H5T_NATIVE_UINT32, offset, n, wide_buf_.data(), info_.path, "tokens");
    } else {
      narrow_buf_.resize(size_t(n));
      read_slab(h_->tokens.id, H5T_NATIVE_UINT16, offset, n, narrow_buf_.data(), info_.path, "tokens");
    }
  }
  // Widen outside the lock; track the max id to check the vocabulary once per read.
  uint32_t max_id = 0;
  if (wide_) {
    for (int64_t i = 0; i < n; ++i) out[i] = int32_t(wide_buf_[i]), max_id = std::max(max_id, wide_buf_[i]);
  } else {
    for (int64_t i = 0; i < n; ++i) out[i] = narrow_buf_[i], max_id = std::max<uint32_t>(max_id, narrow_buf_[i]);
  }
  if (n > 0 && int64_t(max_id) >= info_.meta.vocab_size) {
    int64_t at = 0;
    while (int64_t(uint32_t(out[at])) < info_.meta.vocab_size) ++at;
    fail(info_.path, "token id " + std::to_string(uint32_t(out[at])) + " at offset " +
                         std::to_string(offset + at) + " is outside the vocab of " +
                         std::to_string(info_.meta.vocab_size) + " (corrupt shard or wrong tokenizer)");
  }
}

void ShardReader::read_doc_offsets(int64_t first, int64_t n, int64_t* out) {
  if (n == 0) return;
  std::lock_guard<std::recursive_mutex> lock(hdf5_lock());
  read_slab(h_->offsets.id, H5T_NATIVE_INT64, first, n, out, info_.path, "doc_offsets");
}

}  // namespace gpt::data
