## The list of posts.  The page is cached under a key naming the Post
## table: any committed change to a post makes a new key.  Each card is
## cached too, under a key naming its post: when one post changes, the page
## renders again but only that post's card does.  The 1 is the templates'
## version: bump it when the markup changes.
<%inherit file="layout.mako"/>
<%page cached="True" cache_key="${request.cache_key(1, self.uri, Post)}"/>
<%def name="title()">Posts</%def>
<%def name="card(post)" cached="True" cache_key="${request.cache_key(1, self.uri, 'card', post)}">
<article class="card" id="post-${post.id}">
  <h2><a href="${request.route_path('post', id=post.id)}">${post.title}</a></h2>
  <p>${post.summary}</p>
  <p class="renders">card rendered ${rendered('card', post.id)}×</p>
</article>
</%def>
<h1>Posts</h1>
% for post in posts:
${card(post)}
% endfor
<p class="renders">list rendered ${rendered('list')}×</p>
