// Boost 1.81's header-only Boost.Process v2 declares
// process_environment::on_setup but defines it only in this .ipp: it must be
// compiled exactly once in a program, so it lives in its own library that
// nvsd, nvs and the test harness all link.
#include <boost/process/v2/environment.hpp>
#include <boost/process/v2/impl/environment.ipp>
