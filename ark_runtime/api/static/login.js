"use strict";
// Sign in with fetch so a refusal (401, 429) shows its sentence instead of a JSON page.
document.getElementById("login-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const out = document.getElementById("login-error");
  out.textContent = "";
  const resp = await fetch("/login", {method: "POST", body: new URLSearchParams(new FormData(ev.target)),
                                      redirect: "manual", credentials: "same-origin"});
  if (resp.type === "opaqueredirect" || resp.ok) { window.location = "/"; return; }
  let msg = "sign-in failed (" + resp.status + ")";
  try { msg = (await resp.json()).error.message; } catch (e) { /* keep the status */ }
  out.textContent = msg;
});
