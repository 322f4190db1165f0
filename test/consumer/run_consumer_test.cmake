# cmake -P script behind the asqlite_install_consumer test (see
# consumer_test.cmake for the variables it receives). Fails on the first step
# that goes wrong, with that step's output.

function(run_step)
  execute_process(COMMAND ${ARGN} COMMAND_ECHO STDOUT COMMAND_ERROR_IS_FATAL ANY)
endfunction()

function(require_file path)
  if(NOT EXISTS ${path})
    message(FATAL_ERROR "the installed tree lacks ${path}")
  endif()
endfunction()

file(REMOVE_RECURSE ${PREFIX} ${CONSUMER_BINARY_DIR})
run_step(${CMAKE_COMMAND} --install ${ASQLITE_BUILD_DIR} --prefix ${PREFIX})

# What a user of the package relies on.
set(package_dir ${PREFIX}/${LIBDIR}/cmake/asqlite)
require_file(${PREFIX}/${INCLUDEDIR}/asqlite/connection.hpp)
require_file(${PREFIX}/${INCLUDEDIR}/asqlite/engine.hpp)
require_file(${PREFIX}/${BINDIR}/asqlite-init-db)
require_file(${package_dir}/asqliteConfig.cmake)
require_file(${package_dir}/asqliteConfigVersion.cmake)
require_file(${package_dir}/asqliteTargets.cmake)
if(NOT EXISTS ${PREFIX}/${LIBDIR}/libasqlite.a AND NOT EXISTS ${PREFIX}/${LIBDIR}/libasqlite.so)
  message(FATAL_ERROR "the installed tree lacks ${PREFIX}/${LIBDIR}/libasqlite.a (or .so)")
endif()

# The package must be relocatable: no path into the source or build tree.
file(GLOB package_files ${package_dir}/*.cmake)
foreach(f IN LISTS package_files)
  file(READ ${f} text)
  foreach(tree IN ITEMS ${ASQLITE_SOURCE_DIR} ${ASQLITE_BUILD_DIR})
    string(FIND "${text}" "${tree}" at)
    if(NOT at EQUAL -1)
      message(FATAL_ERROR "${f} refers to ${tree}")
    endif()
  endforeach()
endforeach()

run_step(${PREFIX}/${BINDIR}/asqlite-init-db --help)

run_step(${CMAKE_COMMAND} -S ${CONSUMER_SOURCE_DIR} -B ${CONSUMER_BINARY_DIR} -G ${GENERATOR}
         -DCMAKE_PREFIX_PATH=${PREFIX}
         -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF
         -DCMAKE_BUILD_TYPE=${BUILD_TYPE}
         -DCMAKE_CXX_COMPILER=${CXX_COMPILER}
         "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}"
         "-DCMAKE_EXE_LINKER_FLAGS=${LINKER_FLAGS}")

# find_package must have taken the tree just installed, not another asqlite
# (one installed in /usr/local, say).
file(STRINGS ${CONSUMER_BINARY_DIR}/CMakeCache.txt found_dir REGEX "^asqlite_DIR:")
string(REGEX REPLACE "^asqlite_DIR:[A-Z]+=" "" found_dir "${found_dir}")
file(REAL_PATH ${found_dir} found_dir)
file(REAL_PATH ${package_dir} package_dir)
if(NOT found_dir STREQUAL package_dir)
  message(FATAL_ERROR "find_package(asqlite) used ${found_dir}, not ${package_dir}")
endif()

run_step(${CMAKE_COMMAND} --build ${CONSUMER_BINARY_DIR})
run_step(${CONSUMER_BINARY_DIR}/asqlite_consumer)
