// One Catch2 main for every test binary (compiled once: it is the slow part).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
