/* testing_internal.h — shared by the test doubles in src/testing/. */
#ifndef TWIRL_TESTING_INTERNAL_H
#define TWIRL_TESTING_INTERNAL_H

#include "twirl/testing.h"

/* A process-wide serial number for test transports, starting at 1. */
unsigned long tw__test_next_serial(void);

/* The serial of a string (memory) transport, or 0 if t is not one. */
unsigned long tw__string_transport_serial(const tw_transport *t);
unsigned long tw__memory_transport_serial(const tw_transport *t);

/* The failure a test double hands to connection_lost: clean for code 0,
 * lost with a cause of that code otherwise. The caller owns it. */
tw_failure *tw__test_close_reason(int code);

#endif
