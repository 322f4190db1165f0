# Included by test/CMakeLists.txt. Registers a ctest test that installs this
# build into <build>/consumer-prefix and builds and runs the project in this
# directory against that tree through find_package(asqlite CONFIG) only.

# A consumer of a sanitized static library must compile and link with the
# same sanitizer flags; take them from the top-level directory, where
# ASQLITE_SANITIZE put them.
get_directory_property(asqlite_compile_options DIRECTORY ${PROJECT_SOURCE_DIR} COMPILE_OPTIONS)
get_directory_property(asqlite_link_options DIRECTORY ${PROJECT_SOURCE_DIR} LINK_OPTIONS)
list(JOIN asqlite_compile_options " " asqlite_consumer_compile_flags)
list(JOIN asqlite_link_options " " asqlite_consumer_link_flags)

add_test(NAME asqlite_install_consumer
         COMMAND ${CMAKE_COMMAND}
                 -D ASQLITE_SOURCE_DIR=${PROJECT_SOURCE_DIR}
                 -D ASQLITE_BUILD_DIR=${PROJECT_BINARY_DIR}
                 -D PREFIX=${PROJECT_BINARY_DIR}/consumer-prefix
                 -D CONSUMER_SOURCE_DIR=${CMAKE_CURRENT_LIST_DIR}
                 -D CONSUMER_BINARY_DIR=${PROJECT_BINARY_DIR}/consumer-build
                 -D INCLUDEDIR=${CMAKE_INSTALL_INCLUDEDIR}
                 -D LIBDIR=${CMAKE_INSTALL_LIBDIR}
                 -D BINDIR=${CMAKE_INSTALL_BINDIR}
                 -D GENERATOR=${CMAKE_GENERATOR}
                 -D BUILD_TYPE=${CMAKE_BUILD_TYPE}
                 -D CXX_COMPILER=${CMAKE_CXX_COMPILER}
                 "-D CXX_FLAGS=${CMAKE_CXX_FLAGS} ${asqlite_consumer_compile_flags}"
                 "-D LINKER_FLAGS=${CMAKE_EXE_LINKER_FLAGS} ${asqlite_consumer_link_flags}"
                 -P ${CMAKE_CURRENT_LIST_DIR}/run_consumer_test.cmake)
set_tests_properties(asqlite_install_consumer PROPERTIES TIMEOUT 600)
