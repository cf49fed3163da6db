/*
 * bcryptprimitives.dll shim for running Rust programs under Wine 8.0.
 *
 * Rust's std (1.78+) on x86_64-pc-windows-gnu imports ProcessPrng from
 * bcryptprimitives.dll to seed HashMap keys etc. Wine 8.0 ships no
 * bcryptprimitives.dll, so every Rust .exe fails to start with
 * "err:module:import_dll Library bcryptprimitives.dll ... not found".
 * This DLL exports ProcessPrng on top of SystemFunction036 (RtlGenRandom,
 * exported by advapi32), which Wine does implement.
 *
 * Built by .ci/windows.sh at CI time into target/; never commit the binary.
 */
#include <windows.h>

/* advapi32 exports RtlGenRandom under this name. */
BOOLEAN WINAPI SystemFunction036(PVOID RandomBuffer, ULONG RandomBufferLength);

/* BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData): documented to always
 * return TRUE. SIZE_T is 64-bit but RtlGenRandom takes a ULONG, so fill in
 * chunks. */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE pbData, SIZE_T cbData)
{
    while (cbData > 0) {
        ULONG chunk = cbData > 0x40000000u ? 0x40000000u : (ULONG)cbData;
        if (!SystemFunction036(pbData, chunk))
            return FALSE;
        pbData += chunk;
        cbData -= chunk;
    }
    return TRUE;
}
