// Boost.JSON's implementation, compiled once into each target that uses it:
// Debian's libboost1.81-dev ships the headers, and this keeps the build free
// of a libboost_json link.
#include <boost/json/src.hpp>
