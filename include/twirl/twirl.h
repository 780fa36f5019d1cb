/* twirl/twirl.h — everything. Include the module headers directly to keep
 * compile times down; this one only includes them. */
#ifndef TWIRL_TWIRL_H
#define TWIRL_TWIRL_H

#include "twirl/error.h"
#include "twirl/log.h"
#include "twirl/reactor.h"

#endif
