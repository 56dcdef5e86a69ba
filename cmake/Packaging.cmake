# Install rules and the Debian package (CPack).
#
#   cmake --install build [--prefix /usr/local]   # binaries, units, example config, Python package, docs
#   (cd build && cpack -G DEB)                    # build/asflow_VERSION_ARCH.deb
#
# The systemd units in deploy/systemd name /usr/bin and /etc/asflow; an
# install under another prefix gets copies naming its own directories.
include(GNUInstallDirs)

install(TARGETS asflowd asflowctl asflow-worker RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

# The configuration goes to /etc/asflow whatever the prefix, where asflowd
# looks by default and the units say (ASFLOW_INSTALL_CONFDIR moves it, e.g.
# for an install without root).
set(ASFLOW_INSTALL_CONFDIR /etc/asflow CACHE PATH "Where `cmake --install` puts asflowd.conf and asflow-worker.conf")
# The units, with their paths rewritten at install time when the binaries
# or the configuration go elsewhere than /usr/bin and /etc/asflow (the
# package installs under /usr: CPACK_SET_DESTDIR below keeps
# CMAKE_INSTALL_PREFIX the real prefix while CPack stages). systemd reads
# units from /usr/lib/systemd/system and /usr/local/lib/systemd/system.
foreach(unit asflowd.service asflow-worker@.service)
  install(CODE "
    file(READ \"${PROJECT_SOURCE_DIR}/deploy/systemd/${unit}\" text)
    set(bindir \"\${CMAKE_INSTALL_PREFIX}/${CMAKE_INSTALL_BINDIR}\")
    if(NOT bindir STREQUAL \"/usr/bin\")
      string(REPLACE \"/usr/bin/\" \"\${bindir}/\" text \"\${text}\")
    endif()
    if(NOT \"${ASFLOW_INSTALL_CONFDIR}\" STREQUAL \"/etc/asflow\")
      string(REPLACE \"/etc/asflow/\" \"${ASFLOW_INSTALL_CONFDIR}/\" text \"\${text}\")
      string(REPLACE \"ConfigurationDirectory=asflow\\n\" \"\" text \"\${text}\")
    endif()
    file(MAKE_DIRECTORY \"${PROJECT_BINARY_DIR}/deploy/systemd\")
    file(WRITE \"${PROJECT_BINARY_DIR}/deploy/systemd/${unit}\" \"\${text}\")
    file(INSTALL \"${PROJECT_BINARY_DIR}/deploy/systemd/${unit}\"
      DESTINATION \"\${CMAKE_INSTALL_PREFIX}/lib/systemd/system\"
      PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ WORLD_READ)
  ")
endforeach()
install(FILES deploy/asflowd.conf deploy/asflow-worker.conf
  DESTINATION ${ASFLOW_INSTALL_CONFDIR} PERMISSIONS OWNER_READ OWNER_WRITE GROUP_READ)
install(FILES README.md DESTINATION ${CMAKE_INSTALL_DOCDIR})
install(DIRECTORY docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs)
install(FILES deploy/README.md DESTINATION ${CMAKE_INSTALL_DOCDIR}/deploy)
install(DIRECTORY examples/demo DESTINATION ${CMAKE_INSTALL_DOCDIR}/examples)
# The Python package (python/, the `asflow` module): its sources and the
# asflow.v1 stubs generated into build/python (target asflow_python), where
# Debian's python3 looks (lib/python3/dist-packages under /usr). It needs
# python3-grpcio, -protobuf, -yaml and -rich: the package recommends them
# (the daemon and the CLIs do not need them). `pip install ./python` is the
# other way to install it.
set(ASFLOW_INSTALL_PYTHONDIR lib/python3/dist-packages CACHE PATH
  "Where `cmake --install` puts the asflow Python package (relative to the prefix)")
install(DIRECTORY python/asflow/ DESTINATION ${ASFLOW_INSTALL_PYTHONDIR}/asflow
  FILES_MATCHING PATTERN "*.py" PATTERN "py.typed" PATTERN "__pycache__" EXCLUDE)
install(DIRECTORY ${PROJECT_BINARY_DIR}/python/asflow/v1/ DESTINATION ${ASFLOW_INSTALL_PYTHONDIR}/asflow/v1
  FILES_MATCHING PATTERN "*.py" PATTERN "*.pyi" PATTERN "__pycache__" EXCLUDE)

set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME asflow)
set(CPACK_PACKAGE_VENDOR asflow)
set(CPACK_PACKAGE_CONTACT "asflow maintainers <asflow@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "resumable data extraction as a service (asflowd, asflowctl, asflow-worker)")
set(CPACK_PACKAGE_DESCRIPTION "asflowd runs extraction flows, keeps their state in SQLite and writes every output atomically; asflowctl submits and follows them; asflow-worker runs tasks on other hosts.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_SET_DESTDIR ON)
set(CPACK_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_SECTION utils)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
# Runtime libraries from the binaries (dpkg-shlibdeps, from dpkg-dev), plus
# what the maintainer scripts use.
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_DEPENDS "passwd")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3, python3-grpcio, python3-protobuf, python3-yaml, python3-rich")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "sqlite3, zstd")
set(CPACK_DEBIAN_PACKAGE_CONTROL_EXTRA
  ${PROJECT_SOURCE_DIR}/deploy/debian/postinst
  ${PROJECT_SOURCE_DIR}/deploy/debian/prerm
  ${PROJECT_SOURCE_DIR}/deploy/debian/postrm
  ${PROJECT_SOURCE_DIR}/deploy/debian/conffiles)
set(CPACK_DEBIAN_PACKAGE_CONTROL_STRICT_PERMISSION ON)
include(CPack)
