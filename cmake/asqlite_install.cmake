include(CMakePackageConfigHelpers)

install(TARGETS asqlite asqlite-init-db asqlite-migrate asqlite-backup
  EXPORT asqliteTargets
  ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
  LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
  RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
install(DIRECTORY include/asqlite DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})

set(ASQLITE_CMAKE_DIR ${CMAKE_INSTALL_LIBDIR}/cmake/asqlite)
install(EXPORT asqliteTargets NAMESPACE asqlite:: DESTINATION ${ASQLITE_CMAKE_DIR})
configure_package_config_file(cmake/asqliteConfig.cmake.in
  ${PROJECT_BINARY_DIR}/asqliteConfig.cmake INSTALL_DESTINATION ${ASQLITE_CMAKE_DIR})
write_basic_package_version_file(${PROJECT_BINARY_DIR}/asqliteConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${PROJECT_BINARY_DIR}/asqliteConfig.cmake ${PROJECT_BINARY_DIR}/asqliteConfigVersion.cmake
  DESTINATION ${ASQLITE_CMAKE_DIR})
