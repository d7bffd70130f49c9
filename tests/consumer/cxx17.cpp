// A user's program built as C++17: the tests compile_fail_cxx17_<header> compile this with
// -std=c++17 and -DLOCKDB_HEADER=<lockdb/header.hpp>; the build must stop with the message that
// lockdb needs C++20, before any other error.
#include LOCKDB_HEADER

int main() { return 0; }
