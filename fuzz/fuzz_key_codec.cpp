// The key <-> file name encoding (store_format.hpp): every valid key maps to a relative path
// that decodes to the same key; any file name decodes to a key or to nothing, never crashes. Both
// store formats (they differ in the shard).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "store_format.hpp"

namespace format = lockdb::detail::store_format;

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  for (int version = format::kOldestStoreFormatVersion; version <= format::kStoreFormatVersion;
       ++version) {
    // As a key.
    if (format::key_problem(bytes).empty()) {
      const std::filesystem::path relative = format::key_file_relative(bytes, version);
      std::string appended;
      format::append_key_file_relative(bytes, appended, version);
      if (appended != relative.native()) std::abort();
      const auto decoded = format::decode_key_file(relative, version);
      if (!decoded || *decoded != bytes) std::abort();
      if (relative.begin()->native() != format::shard_of(bytes, version)) std::abort();
    }
    // As a file name found under keys/ (a relative path with any components).
    const std::filesystem::path found{std::string(bytes)};
    if (found.is_relative()) {
      if (auto key = format::decode_key_file(found, version)) {
        if (format::key_file_relative(*key, version) != found) std::abort();
      }
    }
  }
  (void)format::quote_key(bytes);
  (void)format::is_shard_name(bytes);
  (void)format::is_key_file_name(bytes);
  (void)format::is_continuation_dir(bytes);
  (void)format::temp_owner(bytes);
  return 0;
}
