// lockdb: the whole public API.
#pragma once

#include <lockdb/config.hpp>
#include <lockdb/durability.hpp>
#include <lockdb/error.hpp>
#include <lockdb/file_lock.hpp>
#include <lockdb/files.hpp>
#include <lockdb/guards.hpp>
#include <lockdb/history.hpp>
#include <lockdb/store.hpp>
