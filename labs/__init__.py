"""Your exercises, week by week. Fill in each TODO; `rtml grade weekN` checks them.

Run the system on your code with RTML_IMPL=labs.
"""
