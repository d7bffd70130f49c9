// lockdb's requirements on the including program, checked once for every public header (each
// includes this first): a C++17 build stops here with a message that says what to change,
// instead of failing later inside a template. The CMake target lockdb::lockdb asks for C++20.
#pragma once

#if defined(_MSVC_LANG) ? _MSVC_LANG < 202002L : __cplusplus < 202002L
#error "lockdb needs C++20: compile with -std=c++20 (MSVC: /std:c++20)"
#endif
