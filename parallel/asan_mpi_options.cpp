// Compiled into every program that links MPI, in a sanitized build only (the top-level
// CMakeLists.txt, GPT_SANITIZE): the AddressSanitizer options such a program starts
// with. LeakSanitizer is off in them: Open MPI and hwloc allocate for the life of the
// process (MPI_Init's state, which MPI_Finalize never frees) and unload the plugins that
// allocated it, so their reports can be neither symbolised nor suppressed by library.
// Programs without MPI (the core and data tests, most fuzz targets) still check leaks;
// ASAN_OPTIONS in the environment overrides this.
extern "C" __attribute__((visibility("default"), used)) const char* __asan_default_options() {
  return "detect_leaks=0";
}
