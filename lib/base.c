/* connroute: the bottom layer's one piece of state; see base.h. */
#include "base.h"

__thread int cr_in_shim;
__thread uintptr_t cr_in_shim_frame;
