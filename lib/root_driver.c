/* cowfork's Python driver (shim/py/driver.py), built into the binary so that
 * every root gets it at CF_ROOT_DRIVER (lib/root.c): a sandbox sees only its
 * root, so the driver must be inside it. The Makefile makes this object
 * depend on driver.py; the path is relative to the top of the tree, where
 * make runs the compiler. */
__asm__(".section .rodata\n"
        ".global cf_root_driver_py\n"
        ".type cf_root_driver_py, @object\n"
        "cf_root_driver_py:\n"
        ".incbin \"shim/py/driver.py\"\n"
        "cf_root_driver_py_end:\n"
        ".byte 0\n"
        ".global cf_root_driver_py_len\n"
        ".type cf_root_driver_py_len, @object\n"
        ".balign 4\n"
        "cf_root_driver_py_len:\n"
        ".long cf_root_driver_py_end - cf_root_driver_py\n"
        ".previous\n");
