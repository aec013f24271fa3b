"""What is active."""

print(xrd.banner(xrd_plans, xrd_plans_note))  # noqa: F821
print("  try       RE(count([det], 3)); xrd.results()['mask'][:]   (masks of the latest run)")
