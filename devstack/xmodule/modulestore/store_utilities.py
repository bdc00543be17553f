"""Facts about course structure shared by modulestore callers, at edx-platform's module path."""

# Block types that belong to a course without being part of its tree: get_items() returns them,
# get_course().get_children() never reaches them.
DETACHED_XBLOCK_TYPES = {"about", "course_info", "static_tab"}
