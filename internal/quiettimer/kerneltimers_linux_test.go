package quiettimer

const kernelTimers = true
