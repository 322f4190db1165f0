# Strict warnings for asqlite's own targets only; consumers never inherit them.
# -Wshadow and -Wmissing-field-initializers are off: GCC 12 reports scoped
# enumerators (value_type::blob) as shadowing and designated initializers
# that omit defaulted members, both false positives.
add_library(asqlite_warnings INTERFACE)
target_compile_options(asqlite_warnings INTERFACE
  -Wall -Wextra -Wpedantic -Wconversion -Wsign-conversion -Wnon-virtual-dtor
  -Wold-style-cast -Woverloaded-virtual -Wimplicit-fallthrough -Wno-missing-field-initializers)
