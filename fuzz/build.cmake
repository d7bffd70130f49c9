# Configures and builds the fuzz targets (this folder, a project of its own) with clang++:
#   cmake -DSOURCE_DIR=<fuzz> -DBINARY_DIR=<dir> -DCOMPILER=<clang++> -DJOBS=<n> -P build.cmake
# The test fuzz_build (tests/CMakeLists.txt) runs it; `make fuzz` does the same in build/fuzz.
# -O1 with line tables only: symbolized reports, at about half the compile time of -O2 -g.
foreach(var SOURCE_DIR BINARY_DIR COMPILER JOBS)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "build.cmake: -D${var}=... is missing")
  endif()
endforeach()
execute_process(COMMAND ${CMAKE_COMMAND} -S ${SOURCE_DIR} -B ${BINARY_DIR}
                        -DCMAKE_CXX_COMPILER=${COMPILER} -DCMAKE_BUILD_TYPE=Debug
                        "-DCMAKE_CXX_FLAGS_DEBUG=-O1 -gline-tables-only"
                RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "configuring the fuzz targets failed (clang++ with libFuzzer: Debian's clang, libclang-rt-14-dev)")
endif()
execute_process(COMMAND ${CMAKE_COMMAND} --build ${BINARY_DIR} --parallel ${JOBS}
                RESULT_VARIABLE result)
if(NOT result EQUAL 0)
  message(FATAL_ERROR "building the fuzz targets failed")
endif()
