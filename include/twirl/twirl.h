/* twirl/twirl.h — everything. Include the module headers directly to keep
 * compile times down; this one only includes them. */
#ifndef TWIRL_TWIRL_H
#define TWIRL_TWIRL_H

#include "twirl/error.h"
#include "twirl/log.h"
#include "twirl/reactor.h"

#include "twirl/coro.h"
#include "twirl/defer_sync.h"
#include "twirl/deferred.h"
#include "twirl/failure.h"
#include "twirl/task.h"
#include "twirl/threads.h"

#include "twirl/address.h"
#include "twirl/coro_net.h"
#include "twirl/endpoint.h"
#include "twirl/process.h"
#include "twirl/protocol.h"
#include "twirl/resolver.h"
#include "twirl/stdio.h"
#include "twirl/tcp.h"
#include "twirl/tls.h"
#include "twirl/transport.h"
#include "twirl/udp.h"

#include "twirl/basic.h"
#include "twirl/policies.h"

#include "twirl/http_parser.h"
#include "twirl/http_util.h"
#include "twirl/web.h"
#include "twirl/web_client.h"

#include "twirl/testing.h"

#endif
