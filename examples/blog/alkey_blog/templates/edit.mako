## The form that edits a post.  Not cached: it carries a CSRF token.
<%inherit file="layout.mako"/>
<%def name="title()">Edit: ${post.title}</%def>
<h1>Edit a post</h1>
% if error:
<p class="error">${error}</p>
% endif
<form id="edit" method="post" action="${request.route_path('edit', id=post.id)}">
  <input type="hidden" name="csrf_token" value="${get_csrf_token()}">
  <label>Title <input type="text" name="title" value="${request.POST.get('title', post.title)}"></label>
  <label>Text <textarea name="body" rows="8">${request.POST.get('body', post.body)}</textarea></label>
  <p><button type="submit">Save</button> <a href="${request.route_path('post', id=post.id)}">Cancel</a></p>
</form>
