// The rule shared by atomic_json_update (files.hpp) and Store::update (store.hpp) for a `fn` that
// returns nothing: it edits the document in place, so it must take it by non-const lvalue
// reference. Not part of the API: include files.hpp or store.hpp.
#pragma once

#include <nlohmann/json.hpp>

#include <type_traits>

namespace lockdb::detail {

// What calling `fn` with a nlohmann::json lvalue does.
enum class JsonFnKind {
  // Returns void and takes `nlohmann::json&` (or `auto&`): edits the document in place.
  edits,
  // Returns void but could also be called with a temporary: takes the document by value, by
  // `const&` or as `auto&&`. Its edits would go to a copy and be lost; both update functions
  // refuse to compile with it.
  edits_a_copy,
  // Returns a value (the new document: each function says which types it takes), or cannot be
  // called with a `nlohmann::json&` at all.
  other,
};

template <class Fn>
consteval JsonFnKind json_fn_kind_of() {
  using nlohmann::json;
  if constexpr (std::is_invocable_v<Fn&, json&>) {
    if constexpr (std::is_void_v<std::invoke_result_t<Fn&, json&>>) {
      // No temporary binds to a non-const lvalue reference, so a fn taking `json&` or `auto&`
      // cannot be called with one (and a generic lambda's body is not instantiated to find out).
      return std::is_invocable_v<Fn&, json&&> ? JsonFnKind::edits_a_copy : JsonFnKind::edits;
    }
  }
  return JsonFnKind::other;
}

// `Fn` as the update functions deduce it (a reference for an lvalue argument).
template <class Fn>
inline constexpr JsonFnKind json_fn_kind = json_fn_kind_of<Fn>();

}  // namespace lockdb::detail
